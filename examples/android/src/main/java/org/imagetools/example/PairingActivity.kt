// PairingActivity.kt: pairs the app with an ImageTools session from the page's link (a deep
// link, or the text of its QR code): exchanges its single-use pairing code for a device token
// and keeps the token; then uploads what is shared to the app, in the session's presence list
// while it does, and (with a token that may read) listens for the session's events.
package org.imagetools.example

import android.app.Activity
import android.content.Context
import android.content.Intent
import android.net.Uri
import android.os.Bundle
import android.util.Log
import android.widget.Toast
import java.util.UUID
import kotlin.concurrent.thread

private const val TAG = "ImageTools"
private const val PREFS = "imagetools"

/**
 * The stored pairing and resume position, in private preferences (this app only). A pairing
 * by code keeps the device token with its scope, device id, label and expiry; the app never
 * learns the session id. A legacy pairing (an older `#s=` link) keeps the session id itself.
 * Both are capabilities: keep the file out of backups (see README.md).
 */
object PairingStore {
    private val PAIRING_KEYS = listOf("server", "credential", "session", "scope", "device_id", "label", "expires_at")

    private fun prefs(ctx: Context) = ctx.getSharedPreferences(PREFS, Context.MODE_PRIVATE)

    fun load(ctx: Context): Pairing? {
        val p = prefs(ctx)
        val server = p.getString("server", null) ?: return null
        // "session": where a pairing made before pairing codes kept the session id.
        val credential = p.getString("credential", null) ?: p.getString("session", null) ?: return null
        return Pairing(
            server = server,
            credential = credential,
            scope = p.getString("scope", null) ?: "full",
            deviceId = p.getString("device_id", null) ?: "",
            label = p.getString("label", null) ?: "",
            expiresAt = p.getString("expires_at", null) ?: "",
        )
    }

    /** Replaces the stored pairing (a new one starts reading events from the beginning). */
    fun save(ctx: Context, pairing: Pairing) =
        prefs(ctx).edit()
            .remove("session")
            .putString("server", pairing.server).putString("credential", pairing.credential)
            .putString("scope", pairing.scope).putString("device_id", pairing.deviceId)
            .putString("label", pairing.label).putString("expires_at", pairing.expiresAt)
            .putLong("last_event_id", 0).apply()

    /** Forgets the pairing: after a 401 `invalid-token` (revoked, expired) or a session that ended. */
    fun clear(ctx: Context) {
        val e = prefs(ctx).edit()
        for (k in PAIRING_KEYS) e.remove(k)
        e.remove("last_event_id").apply()
    }

    /**
     * This installation's name in the session's presence list: random, made once, the same for
     * its heartbeats and its event streams. A name, not a secret.
     */
    fun clientId(ctx: Context): String {
        val p = prefs(ctx)
        p.getString("client_id", null)?.let { return it }
        val id = UUID.randomUUID().toString().replace("-", "")
        p.edit().putString("client_id", id).apply()
        return id
    }

    fun lastEventId(ctx: Context) = prefs(ctx).getLong("last_event_id", 0)

    fun setLastEventId(ctx: Context, id: Long) = prefs(ctx).edit().putLong("last_event_id", id).apply()
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

    /**
     * Also call this with the text a QR scanner returns. A `#pair=` link's code is exchanged
     * for a token (POST /api/v1/pair) once, right away: it is single use and lives a few
     * minutes. A legacy `#s=` link's session id is checked and kept as before.
     */
    fun pair(link: String) {
        val l = PairingLink.parse(link)
        if (l == null) {
            toast("This is not an ImageTools pairing link.")
            return finish()
        }
        thread {
            val msg = try {
                if (l.code != null) {
                    val p = ImageToolsApi.exchange(l, ImageToolsApi.deviceLabel())
                    PairingStore.save(this, p)
                    "Paired with ${p.server} as \"${p.label}\" (scope ${p.scope})"
                } else {
                    // Legacy: an older link that carries the session id itself.
                    val p = Pairing(l.server, l.session!!, label = ImageToolsApi.deviceLabel())
                    if (ImageToolsApi(p).sessionExists()) {
                        PairingStore.save(this, p)
                        "Paired with ${p.server} (session ${p.redacted()}, an older link)"
                    } else {
                        "That session is unknown or has expired: open ImageTools and scan again."
                    }
                }
            } catch (e: ImageToolsException) {
                // 410: the code was used or has expired; 401: unknown code. Each says to scan a new one.
                e.message ?: "Pairing failed."
            } catch (e: Exception) {
                "Cannot reach ${l.server}: ${e.message}"
            }
            runOnUiThread { toast(msg); finish() }
        }
    }

    /** Sends the images, in the session's presence list ("Pixel 8 · uploading") while it does. */
    private fun share(uris: List<Uri>) {
        val p = PairingStore.load(this)
            ?: return run { toast("Pair with ImageTools first: scan the pairing code on its page."); finish() }
        thread {
            val api = ImageToolsApi(p)
            val (stored, last) = api.whileAnnounced(PairingStore.clientId(this)) { uploadAll(api, p, uris) }
            runOnUiThread {
                toast(if (stored == uris.size) "Sent $stored image(s) to ImageTools" else "Sent $stored of ${uris.size}. $last")
                finish()
            }
        }
    }

    /** One request per image, so one failure does not sink the others. Returns how many were stored and the last error. */
    private fun uploadAll(api: ImageToolsApi, p: Pairing, uris: List<Uri>): Pair<Int, String> {
        var stored = 0
        var last = ""
        for (uri in uris) {
            try {
                api.upload(contentResolver, uri)
                stored++
            } catch (e: ImageToolsException) {
                last = e.message ?: "upload failed"
                Log.w(TAG, "upload with ${p.redacted()} failed: ${e.status} ${e.slug}")
                if (e.mustPairAgain) {
                    // Revoked, expired, or the session ended: the stored pairing is dead.
                    PairingStore.clear(this)
                    break
                }
                if (e.status == 403 || e.status == 404) break // every later image would fail the same way
            }
        }
        return Pair(stored, last)
    }

    private fun toast(s: String) = Toast.makeText(this, s, Toast.LENGTH_LONG).show()
}

/**
 * Example: follow the session while a screen is visible (start in onStart, stop in onStop).
 * Only for a pairing that may read (scope `view` or `full`, or a legacy session id): an
 * upload-only token, what a pairing code gives by default, cannot read events, and this
 * returns null for it.
 */
fun startListening(ctx: Context, onEvent: (org.json.JSONObject) -> Unit): EventListener? {
    val p = PairingStore.load(ctx) ?: return null
    if (!p.canView) {
        Log.i(TAG, "paired to upload only (scope ${p.scope}): no events to follow")
        return null
    }
    val listener = EventListener(
        p,
        lastEventId = PairingStore.lastEventId(ctx),
        onEvent = { ev ->
            onEvent(ev)
            if (ev.has("id")) PairingStore.setLastEventId(ctx, ev.getLong("id"))
        },
        onSessionGone = { Log.i(TAG, "session of ${p.redacted()} ended") },
        onRefused = { e ->
            Log.i(TAG, "events refused: ${e.status} ${e.slug}")
            if (e.mustPairAgain) PairingStore.clear(ctx)
        },
        clientId = PairingStore.clientId(ctx),
    )
    thread(name = "imagetools-events") { listener.run() }
    return listener
}
