// ImageToolsApi.kt: the ImageTools HTTP API (docs/api.md) as an Android app uses it: pairing
// (a pairing code exchanged for a device token), checking the pairing, presence, and uploading
// an image streamed from a content Uri, with the retry rules of imagetools-upload (connection
// errors, 5xx and 429 retried with backoff, Retry-After honoured, other 4xx final).
package org.imagetools.example

import android.content.ContentResolver
import android.net.Uri
import android.os.Build
import android.provider.OpenableColumns
import okhttp3.HttpUrl.Companion.toHttpUrlOrNull
import okhttp3.MediaType
import okhttp3.MediaType.Companion.toMediaType
import okhttp3.MultipartBody
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.RequestBody
import okhttp3.RequestBody.Companion.toRequestBody
import okhttp3.Response
import okio.BufferedSink
import okio.source
import org.json.JSONObject
import java.io.IOException
import java.net.URI
import java.util.concurrent.TimeUnit
import kotlin.concurrent.timer
import kotlin.math.min
import kotlin.random.Random

/**
 * A pairing link as the ImageTools page shows it, as text and QR code: the site and either a
 * single-use pairing [code] (`https://host/#pair=itp.CODE`) or, on older links, the [session]
 * id itself (`https://host/#s=ID`: the legacy path). Exactly one of the two is set.
 */
data class PairingLink(val server: String, val code: String?, val session: String?) {
    // Both are capabilities: never in logs.
    override fun toString() = "PairingLink($server)"

    companion object {
        private val CODE_RE = Regex("^itp\\.[A-Za-z0-9_-]{22}$")
        private val SESSION_RE = Regex("^[A-Za-z0-9_-]{22,64}$")

        /**
         * Reads a pairing link: `http://host/#pair=itp.CODE` (also with a path prefix such as
         * `https://host/imagetools/#pair=...`), or a legacy link that carries the session id
         * (`#s=ID`, `#session=ID`, `?session=ID`). The server is the page's address without the
         * file name: the API lives under [server]/api/v1. Returns null when [link] is neither.
         */
        fun parse(link: String): PairingLink? {
            val url = link.trim().toHttpUrlOrNull() ?: return null
            // The fragment is a list of key=value pairs (the page may add others).
            val fragment = url.fragment.orEmpty().split('&').mapNotNull {
                val kv = it.split('=', limit = 2)
                if (kv.size == 2) Pair(kv[0], kv[1]) else null
            }.toMap()
            val path = url.encodedPath.replace(Regex("/[^/]*\\.html?$"), "/").trimEnd('/')
            val origin = url.scheme + "://" + url.host + (if (url.port != defaultPort(url.scheme)) ":" + url.port else "")
            val code = fragment["pair"]
            if (code != null) return if (CODE_RE.matches(code)) PairingLink(origin + path, code, null) else null
            val session = fragment["s"] ?: fragment["session"] ?: url.queryParameter("session")
                ?: url.queryParameter("s") ?: return null
            if (!SESSION_RE.matches(session)) return null
            return PairingLink(origin + path, null, session)
        }

        private fun defaultPort(scheme: String) = if (scheme == "https") 443 else 80
    }
}

/**
 * What the app keeps once paired: the site (the API is under [server]/api/v1) and the
 * [credential] it presents. Normally that is a device token (`itk.` and 32 characters) a
 * pairing code was exchanged for: its [scope] is what the session's owner chose (`upload`,
 * `view` or `full`), [deviceId] and [label] are how the owner sees this phone in the page's
 * device list, where it can be revoked at any moment; the app never learns the session id.
 * A pairing from a legacy `#s=` link holds the session id itself: scope `full`, no device,
 * not revocable short of deleting the session.
 */
data class Pairing(
    val server: String,
    val credential: String,
    val scope: String = "full",
    val deviceId: String = "",
    val label: String = "",
    val expiresAt: String = "",
) {
    /** A device token (the normal case), not a session id from a legacy link. */
    val isToken: Boolean get() = credential.startsWith("itk.")

    /** Whether the credential may read the session (images, events): scope `view` or `full`. */
    val canView: Boolean get() = scope == "view" || scope == "full"

    /** Names the pairing in local keys without repeating a token: the device id, or the session id. */
    val key: String get() = if (isToken) deviceId else credential

    /** Credentials are capabilities: logs and UI show only this much. */
    fun redacted(): String = if (isToken) credential.take(10) + "..." else credential.take(6) + "..."

    override fun toString() = "Pairing($server, ${redacted()}, $scope)"
}

/** An error answer, from its problem+json body; [status] is 0 when the server was not reached. */
class ImageToolsException(val status: Int, val type: String?, message: String) : IOException(message) {
    /** The problem's slug (`invalid-token`, `pairing-code-used`, ...), or "" when there was none. */
    val slug: String get() = type.orEmpty().removePrefix("urn:imagetools:problem:")

    /**
     * True when only a new pairing helps: the token was revoked or has expired (401
     * `invalid-token`), the session has ended (404 `unknown-session`), or, when pairing, the
     * code was used or has expired (410). Forget the stored pairing and scan a new code.
     */
    val mustPairAgain: Boolean
        get() = (status == 401 && slug == "invalid-token") || (status == 404 && slug == "unknown-session") ||
            (status == 410 && slug.startsWith("pairing-code-"))
}

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

    /**
     * The credential goes in the Authorization header, never in a URL (query strings are
     * logged): a token always, a legacy session id on every call but the multipart upload and
     * tus creation, where it stays in the form field / metadata as before.
     */
    private fun Request.Builder.credential() = header("Authorization", "Bearer " + pairing.credential)

    /**
     * GET /images/{id} with the credential (scope `view` or `full`): the image's metadata with
     * freshly signed URLs (for an event whose URLs have expired). Null when the image is gone
     * or not in this session (404: the server does not say which).
     */
    fun image(id: String): StoredImage? {
        val req = Request.Builder().url(url("/images/$id")).credential().build()
        client.newCall(req).execute().use { res ->
            if (res.code == 404) return null
            if (res.code != 200) throw problem(res)
            return stored(JSONObject(res.body!!.string()))
        }
    }

    /**
     * GET /session with the credential (any scope): the session as the credential sees it,
     * with `scope` and `expires_at`, and for a token its `device_id`, `label` and `source`
     * (never the session id). Null when the session has ended (404). A revoked or expired token
     * throws [ImageToolsException] 401 `invalid-token` ([ImageToolsException.mustPairAgain]).
     */
    fun session(): JSONObject? {
        val req = Request.Builder().url(url("/session")).credential().build()
        client.newCall(req).execute().use { res ->
            if (res.code == 404) return null
            if (res.code != 200) throw problem(res)
            return JSONObject(res.body!!.string())
        }
    }

    /**
     * True when the pairing still opens its session. A token asks GET /session; a legacy session
     * id asks GET /sessions/{id} as before (a token never goes into a path). False when the
     * session is unknown or has expired; a revoked or expired token throws 401 `invalid-token`.
     */
    fun sessionExists(): Boolean {
        if (pairing.isToken) return session() != null
        val req = Request.Builder().url(url("/sessions/" + pairing.credential)).build()
        client.newCall(req).execute().use { res ->
            return when (res.code) {
                200 -> true
                404, 400 -> false
                else -> throw problem(res)
            }
        }
    }

    /**
     * POST /presence: puts this app in the session's presence list as [clientId] ("Pixel 8 ·
     * uploading" on the page), `uploading` or `idle`. The server keeps the entry 45 s; renew it
     * every [PRESENCE_RENEW_MS]. A token's device label and source win over the ones sent.
     * Presence is a courtesy: every failure is ignored. Returns the status: 204, 0 when the
     * server was not reached, 404 from a server older than presence.
     */
    fun announce(clientId: String, state: String): Int {
        val body = JSONObject().put("client_id", clientId).put("state", state)
            .put("label", pairing.label.ifEmpty { deviceLabel() }).put("source", SOURCE)
            .toString().toRequestBody(JSON)
        val req = Request.Builder().url(url("/presence")).credential().post(body).build()
        return try {
            client.newCall(req).execute().use { it.code }
        } catch (e: IOException) {
            0
        }
    }

    /** DELETE /presence?client_id=: leaves the presence list now. Failures are ignored. */
    fun leave(clientId: String): Int {
        // A client id is [A-Za-z0-9_-]: nothing to escape.
        val req = Request.Builder().url(url("/presence?client_id=$clientId")).credential().delete().build()
        return try {
            client.newCall(req).execute().use { it.code }
        } catch (e: IOException) {
            0
        }
    }

    /**
     * Runs [work] while the app is announced as [state]: one heartbeat at once, one every
     * [PRESENCE_RENEW_MS] while it lasts, and a leave at the end, whatever [work] does. A server
     * that answers the first heartbeat with anything but 2xx (404: no presence there) is not
     * told again.
     */
    fun <T> whileAnnounced(clientId: String, state: String = "uploading", work: () -> T): T {
        val on = announce(clientId, state) in 200..299
        val lock = Any()
        var done = false
        val renew = if (!on) null else timer(
            name = "imagetools-presence", daemon = true,
            initialDelay = PRESENCE_RENEW_MS, period = PRESENCE_RENEW_MS,
        ) {
            // Under the lock, so that no heartbeat arrives after the leave and brings the entry back.
            synchronized(lock) { if (!done) announce(clientId, state) else 0 }
        }
        try {
            return work()
        } finally {
            renew?.cancel()
            synchronized(lock) { done = true }
            if (on) leave(clientId)
        }
    }

    /**
     * Uploads one image from [uri] (a content:// Uri from a share intent or the photo picker)
     * with `source=android_app`. The bytes are streamed from the ContentResolver while they
     * are sent, never read into memory whole. Retries like imagetools-upload. Call it off the
     * main thread (a WorkManager worker is the right home: it survives the app going away).
     * A token goes only in the Authorization header (no `session_id` field); it needs scope
     * `upload` or `full` (403 `insufficient-scope` otherwise).
     */
    fun upload(resolver: ContentResolver, uri: Uri, source: String = SOURCE): StoredImage {
        val name = displayName(resolver, uri) ?: "image"
        val type = (resolver.getType(uri) ?: "application/octet-stream").toMediaType()
        var attempt = 0
        while (true) {
            val form = MultipartBody.Builder().setType(MultipartBody.FORM)
            // Legacy pairing: the session id in the form field, before the files, as before.
            if (!pairing.isToken) form.addFormDataPart("session_id", pairing.credential)
            val body = form
                .addFormDataPart("source", source)
                .addFormDataPart("file", name, UriBody(resolver, uri, type))
                .build()
            val builder = Request.Builder().url(url("/images")).post(body)
            val req = (if (pairing.isToken) builder.credential() else builder).build()
            var waitMs = 0L
            try {
                client.newCall(req).execute().use { res ->
                    if (res.code == 201 || res.code == 200) return parseStored(res)
                    if (res.code != 429 && res.code < 500) throw problem(res) // final: 400, 401, 403, 404, 413, 415
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
        /** The source this app uploads, pairs and announces itself as. */
        const val SOURCE = "android_app"

        /** The server keeps a presence entry 45 s after each heartbeat; one every 20 s keeps it. */
        const val PRESENCE_RENEW_MS = 20_000L

        private const val PROBLEM = "urn:imagetools:problem:"
        private val JSON = "application/json".toMediaType()
        private val TOKEN_RE = Regex("^itk\\.[A-Za-z0-9_-]{32}$")

        /**
         * This phone's name in the owner's device list and the presence list: its model
         * ("Pixel 8"), else "Android phone". At most 64 characters, no control characters.
         */
        fun deviceLabel(): String {
            val model = (Build.MODEL ?: "").filter { it >= ' ' && it !in '\u007f'..'\u009f' }.trim().take(64)
            return model.ifEmpty { "Android phone" }
        }

        /**
         * Exchanges the link's single-use pairing code for a token of this app's own: POST
         * /pair `{"code", "label", "source": "android_app"}` → 201 `{"token", "device_id",
         * "scope", "label", "source", "expires_at"}`. No credential goes with it: the code is
         * the credential. The scope and lifetime are what the page's owner chose; the answer
         * never names the session. Not retried: a code is single use, and a second try after a
         * lost answer would find it used (410); scan a new one then.
         */
        fun exchange(
            link: PairingLink,
            label: String = deviceLabel(),
            client: OkHttpClient = OkHttpClient.Builder()
                .connectTimeout(15, TimeUnit.SECONDS)
                .readTimeout(30, TimeUnit.SECONDS)
                .build(),
        ): Pairing {
            val code = requireNotNull(link.code) { "not a pairing-code link" }
            val body = JSONObject().put("code", code).put("label", label).put("source", SOURCE)
                .toString().toRequestBody(JSON)
            val req = Request.Builder().url(link.server.trimEnd('/') + "/api/v1/pair")
                .header("Accept", "application/json")
                .post(body)
                .build()
            val res = try {
                client.newCall(req).execute()
            } catch (e: IOException) {
                throw ImageToolsException(0, null, "Cannot reach ${link.server}: ${e.message}")
            }
            res.use {
                if (res.code == 404 || res.code == 405) {
                    throw ImageToolsException(res.code, null, "This server cannot pair devices: is it an ImageTools server, and a current one?")
                }
                if (res.code == 429) throw ImageToolsException(429, null, "Too many pairing attempts; try again in a minute.")
                if (res.code != 201 && res.code != 200) throw problem(res)
                val o = runCatching { JSONObject(res.body!!.string()) }.getOrNull()
                if (o == null || !TOKEN_RE.matches(o.optString("token"))) {
                    throw ImageToolsException(res.code, null, "${link.server} answered ${res.code}, but not with a token.")
                }
                return Pairing(
                    server = link.server,
                    credential = o.getString("token"),
                    scope = o.text("scope").ifEmpty { "upload" },
                    deviceId = o.text("device_id"),
                    label = o.text("label").ifEmpty { label },
                    expiresAt = o.text("expires_at"),
                )
            }
        }

        /** Turns an error answer into an exception whose message a user can act on. */
        fun problem(res: Response): ImageToolsException {
            val text = res.body?.string().orEmpty()
            val p = runCatching { JSONObject(text) }.getOrNull()
            val detail = p?.optString("detail").orEmpty()
            val type = p?.optString("type").orEmpty()
            val msg = when (type.removePrefix(PROBLEM)) {
                "invalid-token" ->
                    "This phone's pairing was revoked or has expired: scan a new pairing code on the ImageTools page."
                "insufficient-scope" -> "This phone's pairing does not allow that" +
                    (scopeNeeded(res)?.let { " (it needs scope $it)" } ?: "") +
                    ": ask for a pairing code that does, and scan it."
                "pairing-code-used" -> "This pairing code was already used: show a new one on the ImageTools page and scan it."
                "pairing-code-expired" -> "This pairing code has expired: show a new one on the ImageTools page and scan it."
                "invalid-pairing-code" -> "The server does not know this pairing code: show a new one on the ImageTools page."
                else -> when (res.code) {
                    404 -> "The session is unknown or has expired: scan a new pairing code on the ImageTools page."
                    413 -> "The image is too large for this server. $detail"
                    415 -> "The server does not accept this file as an image. $detail"
                    429 -> "Too many uploads right now; try again in a moment. $detail"
                    else -> "The server answered ${res.code}. $detail"
                }
            }
            return ImageToolsException(res.code, type.ifEmpty { null }, msg.trim())
        }

        /** The scope a 403 asks for, from `WWW-Authenticate: Bearer error="insufficient_scope", scope="view"`. */
        private fun scopeNeeded(res: Response): String? =
            Regex("scope=\"([a-z]+)\"").find(res.header("WWW-Authenticate").orEmpty())?.groupValues?.get(1)

        /** A string member, "" when it is absent or null (optString would say "null"). */
        private fun JSONObject.text(key: String): String = if (isNull(key)) "" else optString(key)
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
