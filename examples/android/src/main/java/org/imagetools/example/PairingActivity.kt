// PairingActivity.kt: pairs the app with an ImageTools session from the page's link (a deep
// link, or the text of its QR code), checks the session, and keeps it; then uploads what is
// shared to the app and listens for the session's events.
package org.imagetools.example

import android.app.Activity
import android.content.Context
import android.content.Intent
import android.net.Uri
import android.os.Bundle
import android.util.Log
import android.widget.Toast
import kotlin.concurrent.thread

private const val TAG = "ImageTools"
private const val PREFS = "imagetools"

/** Stored pairing and resume position (the session id is a capability: keep it in private prefs). */
object PairingStore {
    fun load(ctx: Context): Pairing? {
        val p = ctx.getSharedPreferences(PREFS, Context.MODE_PRIVATE)
        val server = p.getString("server", null) ?: return null
        val session = p.getString("session", null) ?: return null
        return Pairing(server, session)
    }

    fun save(ctx: Context, pairing: Pairing) =
        ctx.getSharedPreferences(PREFS, Context.MODE_PRIVATE).edit()
            .putString("server", pairing.server).putString("session", pairing.session)
            .putLong("last_event_id", 0).apply()

    fun lastEventId(ctx: Context) = ctx.getSharedPreferences(PREFS, Context.MODE_PRIVATE).getLong("last_event_id", 0)

    fun setLastEventId(ctx: Context, id: Long) =
        ctx.getSharedPreferences(PREFS, Context.MODE_PRIVATE).edit().putLong("last_event_id", id).apply()
}

/**
 * Declared in the manifest with two intent filters:
 * - ACTION_VIEW for http(s)://your-imagetools-host/ (the pairing link; App Links or a QR
 *   scanner hand it over), and
 * - ACTION_SEND / ACTION_SEND_MULTIPLE for image/\* (the system share sheet).
 */
class PairingActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        when (intent?.action) {
            Intent.ACTION_VIEW -> intent.dataString?.let { pair(it) }
            Intent.ACTION_SEND -> intent.getParcelableExtra<Uri>(Intent.EXTRA_STREAM)?.let { share(listOf(it)) }
            Intent.ACTION_SEND_MULTIPLE ->
                intent.getParcelableArrayListExtra<Uri>(Intent.EXTRA_STREAM)?.let { share(it) }
        }
    }

    /** Also call this with the text a QR scanner returns. */
    fun pair(link: String) {
        val p = Pairing.parse(link)
        if (p == null) {
            toast("This is not an ImageTools pairing link.")
            return finish()
        }
        thread {
            val msg = try {
                if (ImageToolsApi(p).sessionExists()) {
                    PairingStore.save(this, p)
                    "Paired with ${p.server} (session ${p.redacted()})"
                } else {
                    "That session is unknown or has expired: open ImageTools and scan again."
                }
            } catch (e: Exception) {
                "Cannot reach ${p.server}: ${e.message}"
            }
            runOnUiThread { toast(msg); finish() }
        }
    }

    /** One request per image, so one failure does not sink the others. */
    private fun share(uris: List<Uri>) {
        val p = PairingStore.load(this) ?: return run { toast("Pair with ImageTools first."); finish() }
        thread {
            val api = ImageToolsApi(p)
            var stored = 0
            var last = ""
            for (uri in uris) {
                try {
                    api.upload(contentResolver, uri)
                    stored++
                } catch (e: ImageToolsException) {
                    last = e.message ?: "upload failed"
                    Log.w(TAG, "upload to session ${p.redacted()} failed: ${e.status} $last")
                    if (e.status == 404) break // every later image would fail the same way
                }
            }
            runOnUiThread {
                toast(if (stored == uris.size) "Sent $stored image(s) to ImageTools" else "Sent $stored of ${uris.size}. $last")
                finish()
            }
        }
    }

    private fun toast(s: String) = Toast.makeText(this, s, Toast.LENGTH_LONG).show()
}

/** Example: follow the session while a screen is visible (start in onStart, stop in onStop). */
fun startListening(ctx: Context, onEvent: (org.json.JSONObject) -> Unit): EventListener? {
    val p = PairingStore.load(ctx) ?: return null
    val listener = EventListener(
        p,
        lastEventId = PairingStore.lastEventId(ctx),
        onEvent = { ev ->
            onEvent(ev)
            if (ev.has("id")) PairingStore.setLastEventId(ctx, ev.getLong("id"))
        },
        onSessionGone = { Log.i(TAG, "session ${p.redacted()} ended") },
    )
    thread(name = "imagetools-events") { listener.run() }
    return listener
}
