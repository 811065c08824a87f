/* fuzz_config.c: libFuzzer target for the configuration file parser
 * (it_config_load_file over it_kvfile_read) and it_config_set. */
#define _GNU_SOURCE
#include "config.h"

#include "common/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The parser reads a named file, so the input is written to an in-memory
 * file (memfd) once per run and loaded through /proc/self/fd: no disk, no
 * temporary names. After a successful load every value must be within its
 * documented range. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	it_config cfg;
	char err[256];
	int rc;

	if (fd < 0) {
		fd = memfd_create("fuzz-config", 0);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	it_config_defaults(&cfg);
	err[0] = '\0';
	rc = it_config_load_file(&cfg, path, err, sizeof(err));
	if (rc < 0 && err[0] == '\0')
		abort(); /* every refusal says why */
	if (rc == 0) {
		if (cfg.threads < 1 || cfg.threads > 256 || cfg.rate_sessions < 0 || cfg.max_upload_bytes < 1024 ||
		    cfg.session_ttl < 60 || cfg.ws_max_message < 126)
			abort();
		if (cfg.database_url == NULL || cfg.allowed_origins == NULL || cfg.metrics_token == NULL)
			abort();
	}
	it_config_free(&cfg);
	return 0;
}
