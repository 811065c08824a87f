// EventListener.kt: follows a session's events (docs/api.md "Events") over Server-Sent Events
// with a long-poll fallback, resuming after the last event id on every reconnect, with
// exponential backoff and jitter; stops for good when the session is gone (404).
package org.imagetools.example

import okhttp3.Call
import okhttp3.OkHttpClient
import okhttp3.Request
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
 */
class EventListener(
    private val pairing: Pairing,
    @Volatile var lastEventId: Long = 0,
    private val onEvent: (JSONObject) -> Unit,
    private val onSessionGone: () -> Unit,
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
        var attempt = 0
        var sseFailures = 0
        while (!stopped) {
            val before = lastEventId
            try {
                if (useLongPoll) longPoll() else sse()
            } catch (e: SessionGone) {
                onSessionGone()
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

    private fun base() = pairing.server.trimEnd('/') + "/api/v1"

    /** Handles one event: skips repeats, advances the cursor, follows session.resync. */
    private fun handle(ev: JSONObject) {
        if (ev.has("id")) {
            val id = ev.getLong("id")
            if (id <= lastEventId) return
            onEvent(ev)
            lastEventId = id
        } else {
            onEvent(ev) // connection.status, session.resync: not stored, no id
            if (ev.optString("type") == "session.resync") {
                // Reload the session's images (GET /sessions/{id}/images), then go on from here.
                lastEventId = ev.getJSONObject("data").optLong("last_event_id", lastEventId)
            }
        }
    }

    /** GET /events/stream with Last-Event-ID; a minimal event-stream reader for our server. */
    private fun sse() {
        val req = Request.Builder()
            .url(base() + "/events/stream?session_id=" + pairing.session)
            .header("Accept", "text/event-stream")
            .header("Last-Event-ID", lastEventId.toString())
            .build()
        val c = client.newCall(req).also { call = it }
        c.execute().use { res ->
            if (res.code == 404) throw SessionGone()
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
                .url(base() + "/events?session_id=" + pairing.session + "&cursor=" + lastEventId + "&timeout=25")
                .build()
            val c = client.newBuilder().readTimeout(60, TimeUnit.SECONDS).build().newCall(req).also { call = it }
            c.execute().use { res ->
                if (res.code == 404) throw SessionGone()
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
