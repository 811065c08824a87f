/* fuzz_json_body.c: libFuzzer target for the JSON request bodies: POST /operations parameters (it_op_params_parse) and
 * PATCH /images file names. */
#include "config.h"

#include "db/operations.h"
#include "image/filename.h"

#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The input is a request body, parsed as the handlers parse it (json-c with
 * the depth limit h_operations.c uses). Then:
 * - "params" (or the whole object) is validated for every operation type; an
 *   accepted set must survive its own normalised JSON form unchanged, which
 *   is what the worker reads back;
 * - "filename" (when a string) goes through the display-name and
 *   Content-Disposition functions, whose output must be valid UTF-8 without
 *   path separators or control characters, and a header value that cannot
 *   break out of its quotes or line. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_utf8(const unsigned char *s)
{
	while (*s) {
		int n = *s < 0x80	      ? 0
			: (*s & 0xE0) == 0xC0 ? 1
			: (*s & 0xF0) == 0xE0 ? 2
			: (*s & 0xF8) == 0xF0 ? 3
					      : -1;
		if (n < 0)
			return 0;
		s++;
		for (int i = 0; i < n; i++, s++)
			if ((*s & 0xC0) != 0x80)
				return 0;
	}
	return 1;
}

static void check_params(json_object *params)
{
	for (int t = 0; t < IT_OP_NTYPES; t++) {
		it_op_params p, q;
		char err[256];
		json_object *norm;

		memset(&p, 0, sizeof(p));
		err[0] = '\0';
		if (it_op_params_parse((enum it_op_type)t, params, &p, err, sizeof(err)) != 0) {
			if (err[0] == '\0')
				abort(); /* a refusal always says why */
			continue;
		}
		if (p.quality < 1 || p.quality > 100 || p.width < 0 || p.height < 0 || p.width > IT_OPS_MAX_DIMENSION ||
		    p.height > IT_OPS_MAX_DIMENSION)
			abort();
		norm = it_op_params_json(&p);
		memset(&q, 0, sizeof(q));
		if (it_op_params_parse((enum it_op_type)t, norm, &q, err, sizeof(err)) != 0 ||
		    memcmp(&p, &q, sizeof(p)) != 0)
			abort();
		json_object_put(norm);
	}
}

static void check_filename(const char *name)
{
	char out[256], disp[1024];
	size_t n = it_filename_sanitize(name, "png", out, sizeof(out));

	if (n != strlen(out) || n == 0 || !valid_utf8((const unsigned char *)out))
		abort();
	if (strchr(out, '/') || strchr(out, '\\'))
		abort();
	for (const unsigned char *c = (const unsigned char *)out; *c; c++)
		if (*c < 0x20 || *c == 0x7f)
			abort();
	if (it_filename_disposition(out, disp, sizeof(disp)) == 0) {
		if (strpbrk(disp, "\r\n") != NULL)
			abort();
		/* The quoted ASCII fallback ends at the first '"' after its opening one. */
		const char *q = strstr(disp, "filename=\"");
		if (q == NULL || strchr(q + 10, '"') == NULL ||
		    strncmp(strchr(q + 10, '"'), "\"; filename*=UTF-8''", 20) != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_tokener *tok = json_tokener_new_ex(8);
	json_object *o, *v;

	if (tok == NULL || size > 1 << 20)
		goto out;
	o = json_tokener_parse_ex(tok, (const char *)data, (int)size);
	if (o == NULL)
		goto out;
	if (json_object_is_type(o, json_type_object)) {
		check_params(json_object_object_get_ex(o, "params", &v) ? v : o);
		if (json_object_object_get_ex(o, "type", &v) && json_object_is_type(v, json_type_string)) {
			int t = it_op_type_parse(json_object_get_string(v));
			if (t >= IT_OP_NTYPES ||
			    (t >= 0 && strcmp(it_op_type_name((enum it_op_type)t), json_object_get_string(v)) != 0))
				abort();
		}
		if (json_object_object_get_ex(o, "filename", &v) && json_object_is_type(v, json_type_string))
			check_filename(json_object_get_string(v));
	} else if (json_object_is_type(o, json_type_string)) {
		check_filename(json_object_get_string(o));
	}
	json_object_put(o);
out:
	json_tokener_free(tok);
	return 0;
}
