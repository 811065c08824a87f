/* handlers.h: the HTTP handlers of imagetools.fcgi, one group per file. */
#ifndef IT_FCGI_HANDLERS_H
#define IT_FCGI_HANDLERS_H

#include "fcgi/request.h"

/* h_health.c */
void it_h_health(it_req *req);

/* h_sessions.c */
void it_h_session_create(it_req *req);
void it_h_session_get(it_req *req);
void it_h_session_delete(it_req *req);
void it_h_session_self(it_req *req);

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
void it_h_images_list(it_req *req);
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
