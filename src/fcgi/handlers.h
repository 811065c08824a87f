/* handlers.h: the HTTP handlers of imagetools.fcgi, one group per file. */
#ifndef IT_HANDLERS_H
#define IT_HANDLERS_H

#include "feed/presence.h"
#include "fcgi/request.h"

/* h_health.c */
void it_h_health(it_req *req);

/* h_sessions.c */
void it_h_session_create(it_req *req);
void it_h_session_get(it_req *req);
void it_h_session_delete(it_req *req);

/* h_events.c */
void it_h_events_poll(it_req *req);
void it_h_events_stream(it_req *req);

/* h_upload.c */
void it_h_image_upload(it_req *req);

/* h_tus.c: resumable uploads (tus 1.0.0) under /api/v1/uploads/tus */
void it_h_tus_create(it_req *req);
void it_h_tus_head(it_req *req);
void it_h_tus_patch(it_req *req);
void it_h_tus_delete(it_req *req);
void it_h_tus_override(it_req *req);
/* Adds the tus discovery headers (Tus-Version, Tus-Extension, Tus-Max-Size,
 * Tus-Checksum-Algorithm) to the answer of an OPTIONS request. */
void it_h_tus_discovery_headers(it_req *req);

/* h_images.c */
void it_h_session_images(it_req *req);
void it_h_image_get(it_req *req);
void it_h_image_patch(it_req *req);
void it_h_image_delete(it_req *req);
void it_h_image_file(it_req *req);
void it_h_image_thumbnail(it_req *req);

/* h_operations.c */
void it_h_operation_create(it_req *req);
void it_h_operation_get(it_req *req);
void it_h_operation_cancel(it_req *req);

/* h_presence.c */
void it_h_presence_get(it_req *req);
void it_h_presence_post(it_req *req);
void it_h_presence_delete(it_req *req);
/* Reads what a stream says about itself (the client_id, client_label and
 * client_source query parameters) and the device of its token (device_id
 * NULL or "" for a session id; label and source may be NULL) into *out.
 * Returns 1 when it announces itself, 0 when it is anonymous, or -1 after
 * answering 400 invalid-client-id. */
int it_h_presence_ident(it_req *req, const char *device_id, const char *device_label, const char *device_source,
			it_presence_ident *out);

/* h_devices.c: scoped tokens, pairing codes and devices */
void it_h_token_create(it_req *req);
void it_h_pairing_create(it_req *req);
void it_h_pair(it_req *req);
void it_h_devices_list(it_req *req);
void it_h_device_delete(it_req *req);

/* h_metrics.c */
void it_h_metrics(it_req *req);
/* Starts and stops the flush thread that makes this process count in /metrics. */
void it_h_metrics_start(void);
void it_h_metrics_stop(void);

#endif
