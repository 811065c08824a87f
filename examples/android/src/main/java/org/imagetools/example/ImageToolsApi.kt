// ImageToolsApi.kt: the ImageTools HTTP API (docs/api.md) as an Android app uses it: pairing,
// checking a session, and uploading an image streamed from a content Uri, with the retry rules
// of imagetools-upload (connection errors, 5xx and 429 retried with backoff, Retry-After
// honoured, other 4xx final).
package org.imagetools.example

import android.content.ContentResolver
import android.net.Uri
import android.provider.OpenableColumns
import okhttp3.HttpUrl.Companion.toHttpUrlOrNull
import okhttp3.MediaType
import okhttp3.MediaType.Companion.toMediaType
import okhttp3.MultipartBody
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.RequestBody
import okhttp3.Response
import okio.BufferedSink
import okio.source
import org.json.JSONObject
import java.io.IOException
import java.net.URI
import java.util.concurrent.TimeUnit
import kotlin.math.min
import kotlin.random.Random

/** Where to upload: the site (the API is under [server]/api/v1) and the session id. */
data class Pairing(val server: String, val session: String) {
    companion object {
        private val SESSION_RE = Regex("^[A-Za-z0-9_-]{22,64}$")

        /**
         * Reads the pairing link the ImageTools page shows as text and QR code:
         * `http://host/#s=ID` (also `#session=ID`, `?session=ID`, and a path prefix such as
         * `https://host/imagetools/#s=ID`). Returns null when [link] is not one.
         */
        fun parse(link: String): Pairing? {
            val url = link.trim().toHttpUrlOrNull() ?: return null
            val fragment = url.fragment.orEmpty()
            val fromFragment = fragment.split('&').mapNotNull {
                val kv = it.split('=', limit = 2)
                if (kv.size == 2 && (kv[0] == "s" || kv[0] == "session")) kv[1] else null
            }.firstOrNull()
            val session = fromFragment ?: url.queryParameter("session") ?: url.queryParameter("s") ?: return null
            if (!SESSION_RE.matches(session)) return null
            val path = url.encodedPath.replace(Regex("/[^/]*\\.html?$"), "/").trimEnd('/')
            val origin = url.scheme + "://" + url.host + (if (url.port != defaultPort(url.scheme)) ":" + url.port else "")
            return Pairing(origin + path, session)
        }

        private fun defaultPort(scheme: String) = if (scheme == "https") 443 else 80
    }

    /** Session ids are capabilities: logs and UI show only this much. */
    fun redacted(): String = session.take(6) + "..."
}

/** An error answer, from its problem+json body; [status] is 0 when the server was not reached. */
class ImageToolsException(val status: Int, val type: String?, message: String) : IOException(message)

/**
 * One stored image, as in the 201 answer's `images` array. [fileUrl] and [thumbnailUrl] are
 * signed, expiring URLs (paths on the server): they fetch the bytes without the session
 * credential, e.g. for an image loader, until `signed_url_ttl` runs out; [ImageToolsApi.image]
 * hands out fresh ones. The id alone opens nothing: it is a name, not a key.
 */
data class StoredImage(
    val id: String,
    val filename: String,
    val size: Long,
    val sha256: String,
    val fileUrl: String,
    val thumbnailUrl: String,
    val json: JSONObject,
)

class ImageToolsApi(
    private val pairing: Pairing,
    private val client: OkHttpClient = OkHttpClient.Builder()
        .connectTimeout(15, TimeUnit.SECONDS)
        .writeTimeout(60, TimeUnit.SECONDS) // a stalled upload fails and is retried
        .readTimeout(60, TimeUnit.SECONDS)
        .build(),
    private val retries: Int = 5,
    private val retryDelayMs: Long = 1000,
    private val maxWaitMs: Long = 300_000,
) {
    private fun url(path: String) = pairing.server.trimEnd('/') + "/api/v1" + path

    /**
     * A signed URL from an answer made absolute for an HTTP client or image loader. The server
     * hands out paths that already carry its url_prefix, so they resolve against the host.
     */
    fun absolute(signedPath: String): String = URI(pairing.server).resolve(signedPath).toString()

    /** Every call about an image or an operation presents the session as its credential. */
    private fun Request.Builder.credential() = header("Authorization", "Bearer " + pairing.session)

    /**
     * GET /images/{id} with the session credential: the image's metadata with freshly signed
     * URLs (for an event whose URLs have expired). Null when the image is gone or not in this
     * session (404: the server does not say which).
     */
    fun image(id: String): StoredImage? {
        val req = Request.Builder().url(url("/images/$id")).credential().build()
        client.newCall(req).execute().use { res ->
            if (res.code == 404) return null
            if (res.code != 200) throw problem(res)
            return stored(JSONObject(res.body!!.string()))
        }
    }

    /** GET /sessions/{id}: true when the session exists, false when unknown or expired (404). */
    fun sessionExists(): Boolean {
        val req = Request.Builder().url(url("/sessions/" + pairing.session)).build()
        client.newCall(req).execute().use { res ->
            return when (res.code) {
                200 -> true
                404, 400 -> false
                else -> throw problem(res)
            }
        }
    }

    /**
     * Uploads one image from [uri] (a content:// Uri from a share intent or the photo picker)
     * with `source=android_app`. The bytes are streamed from the ContentResolver while they
     * are sent, never read into memory whole. Retries like imagetools-upload. Call it off the
     * main thread (a WorkManager worker is the right home: it survives the app going away).
     */
    fun upload(resolver: ContentResolver, uri: Uri, source: String = "android_app"): StoredImage {
        val name = displayName(resolver, uri) ?: "image"
        val type = (resolver.getType(uri) ?: "application/octet-stream").toMediaType()
        var attempt = 0
        while (true) {
            val body = MultipartBody.Builder().setType(MultipartBody.FORM)
                .addFormDataPart("session_id", pairing.session)
                .addFormDataPart("source", source)
                .addFormDataPart("file", name, UriBody(resolver, uri, type))
                .build()
            val req = Request.Builder().url(url("/images")).post(body).build()
            var waitMs = 0L
            try {
                client.newCall(req).execute().use { res ->
                    if (res.code == 201 || res.code == 200) return parseStored(res)
                    if (res.code != 429 && res.code < 500) throw problem(res) // final: 400, 404, 413, 415
                    if (attempt >= retries) throw problem(res)
                    waitMs = retryAfterMs(res) ?: backoffMs(attempt)
                }
            } catch (e: ImageToolsException) {
                throw e
            } catch (e: IOException) {
                if (attempt >= retries) throw ImageToolsException(0, null, "Cannot reach ${pairing.server}: ${e.message}")
                waitMs = backoffMs(attempt)
            }
            Thread.sleep(min(waitMs, maxWaitMs))
            attempt++
        }
    }

    /** Doubling from retryDelayMs, capped, with up to half taken off at random. */
    private fun backoffMs(attempt: Int): Long {
        val d = min(maxWaitMs, retryDelayMs shl min(attempt, 20))
        return d - (Random.nextDouble() * (d / 2)).toLong()
    }

    private fun retryAfterMs(res: Response): Long? =
        res.header("Retry-After")?.trim()?.toLongOrNull()?.let { it * 1000 }
            ?: res.headers.getDate("Retry-After")?.let { maxOf(0L, it.time - System.currentTimeMillis()) }

    private fun parseStored(res: Response): StoredImage =
        stored(JSONObject(res.body!!.string()).getJSONArray("images").getJSONObject(0))

    private fun stored(o: JSONObject) = StoredImage(
        o.getString("id"), o.optString("filename"), o.optLong("size"), o.optString("sha256"),
        o.optString("file_url"), o.optString("thumbnail_url"), o,
    )

    private fun displayName(resolver: ContentResolver, uri: Uri): String? =
        resolver.query(uri, arrayOf(OpenableColumns.DISPLAY_NAME), null, null, null)?.use { c ->
            if (c.moveToFirst()) c.getString(0) else null
        }

    companion object {
        /** Turns an error answer into an exception whose message a user can act on. */
        fun problem(res: Response): ImageToolsException {
            val text = res.body?.string().orEmpty()
            val p = runCatching { JSONObject(text) }.getOrNull()
            val detail = p?.optString("detail").orEmpty()
            val msg = when (res.code) {
                404 -> "The session is unknown or has expired: scan the pairing code again."
                413 -> "The image is too large for this server. $detail"
                415 -> "The server does not accept this file as an image. $detail"
                429 -> "Too many uploads right now; try again in a moment. $detail"
                else -> "The server answered ${res.code}. $detail"
            }
            return ImageToolsException(res.code, p?.optString("type"), msg.trim())
        }
    }
}

/** A request body that copies the Uri's bytes to the socket as OkHttp writes it. */
private class UriBody(
    private val resolver: ContentResolver,
    private val uri: Uri,
    private val type: MediaType,
) : RequestBody() {
    override fun contentType() = type

    override fun contentLength(): Long =
        resolver.openAssetFileDescriptor(uri, "r")?.use { it.length } ?: -1L

    // Opened anew on every write, so a retried request sends the whole file again.
    override fun writeTo(sink: BufferedSink) {
        val input = resolver.openInputStream(uri) ?: throw IOException("cannot open $uri")
        input.source().use { sink.writeAll(it) }
    }
}
