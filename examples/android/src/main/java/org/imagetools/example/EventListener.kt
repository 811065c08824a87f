// EventListener.kt: follows a session's events (docs/api.md "Events") over Server-Sent Events
// with a long-poll fallback, resuming after the last event id on every reconnect, with
// exponential backoff and jitter; stops for good when the session is gone (404) or the
// credential is refused (a revoked or expired token, or one without scope view).
package org.imagetools.example

import okhttp3.Call
import okhttp3.HttpUrl
import okhttp3.HttpUrl.Companion.toHttpUrl
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.Response
import org.json.JSONObject
import java.io.IOException
import java.util.concurrent.TimeUnit
import kotlin.math.min
import kotlin.random.Random

/**
 * Calls [onEvent] with every event of the session, once each and in order (the JSON object
 * that every transport carries: id, type, timestamp, data), and [onSessionGone] once when the
 * session is unknown, expired or deleted. [lastEventId] is where to resume: persist the id
 * of the last event you handled (SharedPreferences) and pass it back after a restart.
 * Run [run] on a background thread; [stop] ends it.
 *
 * Reading events needs a pairing of scope `view` or `full` (or a legacy session id): a token
 * of scope `upload`, what a pairing code gives by default, cannot read them (403
 * `insufficient-scope`), so [run] calls [onRefused] at once for one and never connects. The
 * credential goes only in the Authorization header, never in the URL. [onRefused] is also
 * called, once, when the token is revoked or expires while listening (a `session.revoked`
 * event, then 401 `invalid-token`): the listener then stops, since the same token would only
 * be refused again ([ImageToolsException.mustPairAgain] says to pair again).
 * [clientId], when given, puts the listener in the session's presence list under the same
 * name as the app's heartbeats ([ImageToolsApi.announce]), so the page shows one entry.
 */
class EventListener(
    private val pairing: Pairing,
    @Volatile var lastEventId: Long = 0,
    private val onEvent: (JSONObject) -> Unit,
    private val onSessionGone: () -> Unit,
    private val onRefused: (ImageToolsException) -> Unit = {},
    private val clientId: String? = null,
    private val client: OkHttpClient = OkHttpClient.Builder()
        .connectTimeout(15, TimeUnit.SECONDS)
        .readTimeout(45, TimeUnit.SECONDS) // the server sends a keepalive comment every 15 s
        .build(),
) {
    @Volatile private var stopped = false
    @Volatile private var call: Call? = null
    private var useLongPoll = false

    fun stop() {
        stopped = true
        call?.cancel()
    }

    fun run() {
        if (!pairing.canView) {
            onRefused(ImageToolsException(403, "urn:imagetools:problem:insufficient-scope",
                "This phone is paired to upload only, which cannot read the session's events."))
            return
        }
        var attempt = 0
        var sseFailures = 0
        while (!stopped) {
            val before = lastEventId
            try {
                if (useLongPoll) longPoll() else sse()
            } catch (e: SessionGone) {
                onSessionGone()
                return
            } catch (e: Refused) {
                onRefused(e.problem)
                return
            } catch (e: IOException) {
                if (stopped) return
                // SSE that keeps failing before any event (a buffering proxy, say) falls back
                // to long-polling, which works through anything that passes plain requests.
                if (!useLongPoll && lastEventId == before && ++sseFailures >= 3) useLongPoll = true
            }
            if (lastEventId != before) attempt = 0
            val delay = min(60_000L, 1000L shl min(attempt++, 6))
            Thread.sleep(delay - (Random.nextDouble() * delay / 2).toLong())
        }
    }

    private class SessionGone : IOException()

    /** The credential was refused (401, 403) or revoked while the stream was open: do not reconnect. */
    private class Refused(val problem: ImageToolsException) : IOException()

    /** An event URL: [path] under /api/v1, [params], and the client identity; never the credential. */
    private fun url(path: String, vararg params: Pair<String, String>): HttpUrl {
        val b = (pairing.server.trimEnd('/') + "/api/v1" + path).toHttpUrl().newBuilder()
        for ((k, v) in params) b.addQueryParameter(k, v)
        if (clientId != null) {
            // For presence; a token's device label and source win over these.
            b.addQueryParameter("client_id", clientId)
            b.addQueryParameter("client_label", pairing.label.ifEmpty { ImageToolsApi.deviceLabel() })
            b.addQueryParameter("client_source", ImageToolsApi.SOURCE)
        }
        return b.build()
    }

    /** Refuses the stream for good on 401 (a token revoked or expired) and 403 (scope too small). */
    private fun checkRefused(res: Response) {
        if (res.code == 401 || res.code == 403) throw Refused(ImageToolsApi.problem(res))
    }

    /** Handles one event: skips repeats, advances the cursor, follows session.resync. */
    private fun handle(ev: JSONObject) {
        if (ev.has("id")) {
            val id = ev.getLong("id")
            if (id <= lastEventId) return
            onEvent(ev)
            lastEventId = id
        } else {
            onEvent(ev) // connection.status, session.resync, session.revoked: not stored, no id
            when (ev.optString("type")) {
                "session.resync" -> {
                    // Reload the session's images (GET /images with the credential), then go on from here.
                    lastEventId = ev.getJSONObject("data").optLong("last_event_id", lastEventId)
                }
                "session.revoked" -> {
                    // The token was revoked or has expired; the stream ends now and the token is dead.
                    val reason = ev.optJSONObject("data")?.optString("reason").orEmpty()
                    val msg = if (reason == "expired") "This phone's pairing has expired" else "This phone's pairing was revoked"
                    throw Refused(ImageToolsException(401, "urn:imagetools:problem:invalid-token",
                        "$msg: scan a new pairing code on the ImageTools page."))
                }
            }
        }
    }

    /** GET /events/stream with Last-Event-ID; a minimal event-stream reader for our server. */
    private fun sse() {
        val req = Request.Builder()
            .url(url("/events/stream"))
            .header("Authorization", "Bearer " + pairing.credential)
            .header("Accept", "text/event-stream")
            .header("Last-Event-ID", lastEventId.toString())
            .build()
        val c = client.newCall(req).also { call = it }
        c.execute().use { res ->
            if (res.code == 404) throw SessionGone()
            checkRefused(res)
            if (res.code != 200 || res.header("Content-Type")?.startsWith("text/event-stream") != true) {
                throw IOException("stream answered ${res.code}")
            }
            val source = res.body!!.source()
            val data = StringBuilder()
            while (!stopped) {
                // readUtf8Line accepts LF and CRLF, which is what the server sends.
                val line = source.readUtf8Line() ?: break
                when {
                    line.isEmpty() -> {
                        if (data.isNotEmpty()) handle(JSONObject(data.toString()))
                        data.setLength(0)
                    }
                    line.startsWith(":") -> Unit // keepalive comment
                    line.startsWith("data:") -> {
                        if (data.isNotEmpty()) data.append('\n')
                        data.append(line.removePrefix("data:").removePrefix(" "))
                    }
                    else -> Unit // id:, event:, retry: — the JSON carries id and type
                }
            }
            throw IOException("stream ended")
        }
    }

    /** GET /events?cursor=N&timeout=25, over and over. */
    private fun longPoll() {
        while (!stopped) {
            val req = Request.Builder()
                .url(url("/events", Pair("cursor", lastEventId.toString()), Pair("timeout", "25")))
                .header("Authorization", "Bearer " + pairing.credential)
                .build()
            val c = client.newBuilder().readTimeout(60, TimeUnit.SECONDS).build().newCall(req).also { call = it }
            c.execute().use { res ->
                if (res.code == 404) throw SessionGone()
                checkRefused(res)
                if (res.code != 200) throw IOException("long-poll answered ${res.code}")
                // The body may start with keepalive spaces; JSONObject skips them.
                val o = JSONObject(res.body!!.string())
                val events = o.getJSONArray("events")
                for (i in 0 until events.length()) handle(events.getJSONObject(i))
                lastEventId = maxOf(lastEventId, o.optLong("cursor", lastEventId))
            }
        }
    }
}
