/* ingest.c: what every upload shares, multipart or resumable: its first error and the answer to it, the sniffing of a
 * file's first bytes, and the last step, where a complete file becomes an image with its event. */
#include "config.h"

#include "fcgi/ingest.h"

#include "common/log.h"
#include "db/blob.h"
#include "db/event.h"
#include "db/metrics.h"
#include "fcgi/app.h"
#include "fcgi/guard.h"
#include "image/filename.h"
#include "image/sniff.h"
#include "image/thumb.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int it_ingest_fail(it_ingest_error *e, int status, const char *slug, const char *fmt, ...)
{
	va_list ap;

	if (e->status == 0) {
		e->status = status;
		e->slug = slug;
		va_start(ap, fmt);
		vsnprintf(e->detail, sizeof(e->detail), fmt, ap);
		va_end(ap);
	}
	return -1;
}

int it_ingest_refused(it_req *req, it_ingest_error *e, const it_auth_refusal *why)
{
	if (e->status == 0 && why->www_authenticate[0])
		it_resp_header(req, "WWW-Authenticate", "%s", why->www_authenticate);
	if (e->status == 0 && why->status == 429)
		e->retry_after = why->retry_after;
	if (why->status == 400)
		return it_ingest_fail(e, 400, "invalid-session-id", "The credential is malformed.");
	return it_ingest_fail(e, why->status, why->slug, "%s", why->detail);
}

int it_ingest_session_rate(const char *session, it_ingest_error *e)
{
	int64_t retry = 0;

	if (it_guard_rate_check("uploads-session", session, it_g.cfg.rate_uploads, &retry) == 0)
		return 0;
	if (e->status == 0)
		e->retry_after = retry;
	return it_ingest_fail(e, 429, "rate-limited",
			      "Too many uploads into this session; try again in %" PRId64 " seconds.", retry);
}

int it_ingest_answer(it_req *req, const it_ingest_error *e)
{
	int status = e->status ? e->status : 500;
	char labels[32];

	if (status == 503)
		it_resp_header(req, "Retry-After", "5");
	if (status == 429)
		it_resp_header(req, "Retry-After", "%" PRId64, e->retry_after);
	snprintf(labels, sizeof(labels), "status=\"%d\"", status);
	it_metrics_inc("imagetools_upload_errors_total", labels, 1);
	it_resp_problem(req, status, e->slug ? e->slug : "internal", "%s", e->detail);
	return status;
}

int it_ingest_sniff_head(unsigned char *head, size_t *head_len, const char *p, size_t n)
{
	size_t k = IT_SNIFF_MAGIC_BYTES - *head_len;
	it_sniff s;

	if (*head_len >= IT_SNIFF_MAGIC_BYTES)
		return 0;
	if (k > n)
		k = n;
	memcpy(head + *head_len, p, k);
	*head_len += k;
	return it_sniff_type(head, *head_len, &s) == IT_SNIFF_UNKNOWN;
}

int it_ingest_tmpfile(void)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	int fd;

	if (dir == NULL || *dir == '\0')
		dir = "/tmp";
#ifdef O_TMPFILE
	fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
#endif
	snprintf(path, sizeof(path), "%s/imagetools-upload-XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

int it_ingest_write(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int it_ingest_examine(PGconn *conn, int fd, int64_t size, const char *client_name, it_image *img, it_ingest_error *e)
{
	char name[IT_IMAGE_NAME_MAX + 1], err[256];
	void *thumb = NULL;
	size_t thumb_len = 0;
	const char *thumb_type;
	it_sniff s;
	enum it_sniff_rc rc;
	int ret = -1;

	it_filename_sanitize(client_name, NULL, name, sizeof(name));
	if (size == 0)
		return it_ingest_fail(e, 415, "not-an-image", "\"%.60s\" is empty.", name);
	/* pread, not mmap: mapped file pages would count as (and fault in
	 * around each touch as) resident memory of this process. */
	rc = it_sniff_fd(fd, (uint64_t)size, &s);
	if (rc == IT_SNIFF_UNKNOWN)
		return it_ingest_fail(e, 415, "not-an-image",
				      "\"%.60s\" is not a JPEG, PNG, GIF, WebP, HEIC or AVIF image.", name);
	if (rc != IT_SNIFF_OK)
		return it_ingest_fail(e, 415, "corrupt-image", "\"%.60s\" has a damaged or truncated header.", name);
	if ((s.ext[0] == 'h' || s.ext[0] == 'a') && it_thumb_available() && !it_thumb_heif_readable())
		return it_ingest_fail(e, 415, "unsupported-format",
				      "\"%.60s\" is a %s image, which this server's libvips cannot read (it was built "
				      "without libheif); convert it to JPEG before uploading.",
				      name, s.ext[0] == 'a' ? "AVIF" : "HEIC");
	/* Every frame and what decoding it would hold, before libvips allocates. */
	if (it_sniff_check(&s,
			   &(it_sniff_limits){(uint64_t)it_g.cfg.max_pixels, (uint64_t)it_g.cfg.max_dimension,
					      (uint64_t)it_g.cfg.max_decode_bytes},
			   err, sizeof(err)) != 0)
		return it_ingest_fail(e, 413, "too-many-pixels", "\"%.60s\" %s.", name, err);
	/* A build without libvips stores the image without a thumbnail. */
	if (it_thumb_available() &&
	    it_thumb_make(fd, (int)it_g.cfg.thumbnail_size, &thumb, &thumb_len, &thumb_type, err, sizeof(err)) != 0)
		return it_ingest_fail(e, 415, "corrupt-image", "\"%.60s\" cannot be decoded as an image.", name);
	if (thumb != NULL && it_blob_put(conn, thumb, thumb_len, &img->thumb_blob_id, NULL) != 0) {
		it_ingest_fail(e, 503, "database-unavailable", "The database cannot be reached; try again shortly.");
		goto out;
	}
	snprintf(img->content_type, sizeof(img->content_type), "%s", s.content_type);
	img->width = (int32_t)s.width;
	img->height = (int32_t)s.height;
	it_filename_utf8(client_name, img->original_filename, sizeof(img->original_filename));
	it_filename_sanitize(client_name, s.ext, img->filename, sizeof(img->filename));
	ret = 0;
out:
	free(thumb);
	return ret;
}

int it_ingest_record(PGconn *conn, it_image *img, const it_urlsign *signer, it_ingest_error *e)
{
	json_object *data;
	int rc = it_images_insert(conn, img);

	if (rc == 0) {
		/* The event last: it takes the session's row lock until commit. */
		data = it_images_event_data(img, it_g.cfg.url_prefix, signer);
		rc = it_event_append(conn, img->session_id, "image.uploaded", data, NULL);
		json_object_put(data);
	}
	if (rc == 404)
		return it_ingest_fail(e, 404, "unknown-session", "No such session, or it has expired.");
	if (rc != 0)
		return it_ingest_fail(e, 503, "database-unavailable",
				      "The database cannot be reached; try again shortly.");
	return 0;
}
