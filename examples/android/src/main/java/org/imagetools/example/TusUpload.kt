// TusUpload.kt: a resumable upload (tus 1.0.0, docs/uploads.md) with plain OkHttp: create the
// upload (POST), send the bytes in PATCH requests, and after any interruption ask (HEAD) how many
// bytes the server holds and go on from there. The upload URL is kept in private preferences,
// so that a process the system killed resumes where it stopped instead of starting over.
//
// The same requests as tus-android-client (io.tus.android.client) makes; that library works
// too (endpoint [server]/api/v1/uploads/tus, metadata filename / source, and the device token
// as an Authorization: Bearer header). This file spells them out so that nothing about the
// protocol is hidden. A token needs scope upload or full; it goes only in the header, never in
// the metadata. A legacy pairing (session id) sends the session id as the metadata's session_id
// when it creates an upload, as before.
package org.imagetools.example

import android.content.ContentResolver
import android.content.SharedPreferences
import android.net.Uri
import android.provider.OpenableColumns
import android.util.Base64
import okhttp3.MediaType.Companion.toMediaType
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.RequestBody
import okhttp3.RequestBody.Companion.toRequestBody
import okio.BufferedSink
import java.io.IOException
import java.io.InputStream
import java.net.URI
import kotlin.math.min
import kotlin.random.Random

class TusUpload(
    private val pairing: Pairing,
    private val client: OkHttpClient,
    /** Where upload URLs are kept between runs; they are capabilities, so private storage only. */
    private val prefs: SharedPreferences,
    /** Bytes per PATCH. The server commits what arrives anyway; this bounds one request. */
    private val chunkBytes: Long = 4L * 1024 * 1024,
    private val retries: Int = 8,
) {
    private val endpoint = pairing.server.trimEnd('/') + "/api/v1/uploads/tus"
    private val octets = "application/offset+octet-stream".toMediaType()

    /**
     * Uploads [uri] resumably. [onProgress] gets the bytes the server holds. Returns when the
     * server holds every byte: the PATCH that brings the last byte answers only once the image
     * is stored and its image.uploaded event sent. Throws [ImageToolsException] on a refusal
     * (4xx other than 409/423/429) or after [retries] failed attempts in a row. Once the token
     * is revoked or has expired, every HEAD and PATCH is 401 `invalid-token` and nothing more
     * is stored ([ImageToolsException.mustPairAgain]).
     */
    fun upload(resolver: ContentResolver, uri: Uri, source: String = ImageToolsApi.SOURCE, onProgress: (Long, Long) -> Unit = { _, _ -> }) {
        val (name, length) = nameAndSize(resolver, uri)
        // A file of unknown size (some content providers) has no Upload-Length: send it with
        // imagetools' chunked multipart (ImageToolsApi.upload) instead.
        require(length >= 0) { "size of $uri unknown" }
        val key = "tus:" + pairing.key + ":" + uri + ":" + length
        var failures = 0
        while (true) {
            try {
                var url = prefs.getString(key, null)
                var offset = url?.let { head(it, length) } ?: -1L
                if (offset < 0) {
                    url = create(name, length, source)
                    prefs.edit().putString(key, url).apply()
                    offset = 0
                }
                onProgress(offset, length)
                while (offset < length) {
                    val next = patch(url!!, resolver, uri, offset, min(chunkBytes, length - offset))
                    if (next > offset) failures = 0 // progress: the backoff starts over
                    offset = next
                    onProgress(offset, length)
                }
                prefs.edit().remove(key).apply()
                return
            } catch (e: ImageToolsException) {
                if (e.status != 0 && e.status != 409 && e.status != 423 && e.status != 429 && e.status < 500) {
                    // Gone, or its token revoked: this upload URL will never take more bytes.
                    if (e.status == 404 || e.status == 401) prefs.edit().remove(key).apply()
                    throw e
                }
                if (++failures > retries) throw e
            } catch (e: IOException) {
                if (++failures > retries) throw ImageToolsException(0, null, "Cannot reach ${pairing.server}: ${e.message}")
            }
            // Doubling from one second, at most 30 s, with jitter; the next round starts with HEAD.
            val d = min(30_000L, 1000L shl min(failures, 5))
            Thread.sleep(d - (Random.nextDouble() * d / 2).toLong())
        }
    }

    /** POST /uploads/tus: Upload-Length and Upload-Metadata ("key base64,..."); 201 with Location. */
    private fun create(name: String, length: Long, source: String): String {
        // A token only in the Authorization header; a legacy session id in the metadata, as before.
        val meta = (if (pairing.isToken) "" else "session_id ${b64(pairing.credential)},") +
            "filename ${b64(name)},source ${b64(source)}"
        val builder = Request.Builder().url(endpoint)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", length.toString())
            .header("Upload-Metadata", meta)
            .post(ByteArray(0).toRequestBody(null))
        if (pairing.isToken) builder.header("Authorization", "Bearer " + pairing.credential)
        val req = builder.build()
        client.newCall(req).execute().use { res ->
            val loc = res.header("Location")
            if (res.code != 201 || loc == null) throw ImageToolsApi.problem(res)
            return URI(endpoint).resolve(loc).toString()
        }
    }

    /** HEAD <url>: the offset the server holds, or -1 when it no longer knows the upload (404). */
    private fun head(url: String, length: Long): Long {
        val req = Request.Builder().url(url).head()
            .header("Tus-Resumable", "1.0.0")
            .header("Authorization", "Bearer " + pairing.credential)
            .build()
        client.newCall(req).execute().use { res ->
            if (res.code == 404 || res.code == 410) return -1
            if (res.code != 200) throw ImageToolsApi.problem(res)
            if (res.header("Upload-Length")?.toLongOrNull() != length) return -1
            return res.header("Upload-Offset")?.toLongOrNull() ?: -1
        }
    }

    /** PATCH <url> with Upload-Offset and `count` bytes from `offset`; 204 with the new offset. */
    private fun patch(url: String, resolver: ContentResolver, uri: Uri, offset: Long, count: Long): Long {
        val body = object : RequestBody() {
            override fun contentType() = octets
            override fun contentLength() = count
            override fun writeTo(sink: BufferedSink) {
                val input = resolver.openInputStream(uri) ?: throw IOException("cannot open $uri")
                input.use { copyRange(it, sink, offset, count) }
            }
        }
        val req = Request.Builder().url(url)
            .header("Tus-Resumable", "1.0.0")
            .header("Authorization", "Bearer " + pairing.credential)
            .header("Upload-Offset", offset.toString())
            .patch(body)
            .build()
        client.newCall(req).execute().use { res ->
            if (res.code != 204) throw ImageToolsApi.problem(res)
            return res.header("Upload-Offset")?.toLongOrNull() ?: (offset + count)
        }
    }

    private fun copyRange(input: InputStream, sink: BufferedSink, offset: Long, count: Long) {
        var skip = offset
        while (skip > 0) {
            val n = input.skip(skip)
            if (n <= 0) throw IOException("the file is shorter than before")
            skip -= n
        }
        val buf = ByteArray(64 * 1024)
        var left = count
        while (left > 0) {
            val n = input.read(buf, 0, min(buf.size.toLong(), left).toInt())
            if (n < 0) throw IOException("the file is shorter than before")
            sink.write(buf, 0, n)
            left -= n
        }
    }

    private fun b64(s: String) = Base64.encodeToString(s.toByteArray(Charsets.UTF_8), Base64.NO_WRAP)

    private fun nameAndSize(resolver: ContentResolver, uri: Uri): Pair<String, Long> =
        resolver.query(uri, arrayOf(OpenableColumns.DISPLAY_NAME, OpenableColumns.SIZE), null, null, null)?.use { c ->
            if (!c.moveToFirst()) null
            else Pair(c.getString(0) ?: "image", if (c.isNull(1)) -1L else c.getLong(1))
        } ?: Pair("image", -1L)
}
