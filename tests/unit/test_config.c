/* test_config.c: unit tests for common/config. */
#include "config.h"

#include "common/config.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
	it_config cfg;
	char err[256];
	const char *path;

	it_config_defaults(&cfg);
	is_int(cfg.max_upload_bytes, 50 * 1024 * 1024, "default upload limit is 50 MiB");
	is_int(cfg.threads, 8, "default threads");
	is_str(cfg.log_level, "info", "default log level");

	path = tap_write_tmp("# comment\n\n  threads = 4  \nmax_upload_bytes=10M\nurl_prefix = \" /x \"\n"
			     "database_url = host=/tmp port=5432 dbname=it\n");
	is_int(it_config_load_file(&cfg, path, err, sizeof(err)), 0, "file loads");
	is_int(cfg.threads, 4, "spaces around keys and values are ignored");
	is_int(cfg.max_upload_bytes, 10 * 1024 * 1024, "M suffix");
	is_str(cfg.url_prefix, " /x ", "quotes keep spaces");
	is_str(cfg.database_url, "host=/tmp port=5432 dbname=it", "values may contain '='");
	unlink(path);

	path = tap_write_tmp("threads = 4\nthreds = 5\n");
	is_int(it_config_load_file(&cfg, path, err, sizeof(err)), -EINVAL, "unknown key refused");
	ok(strstr(err, ":2:") && strstr(err, "threds"), "error names line and key: %s", err);
	unlink(path);

	path = tap_write_tmp("threads = 0\n");
	is_int(it_config_load_file(&cfg, path, err, sizeof(err)), -EINVAL, "value below range refused");
	ok(strstr(err, "outside") != NULL, "error says out of range: %s", err);
	unlink(path);

	path = tap_write_tmp("threads = many\n");
	is_int(it_config_load_file(&cfg, path, err, sizeof(err)), -EINVAL, "non-number refused");
	unlink(path);

	path = tap_write_tmp("just words\n");
	is_int(it_config_load_file(&cfg, path, err, sizeof(err)), -EINVAL, "line without = refused");
	unlink(path);

	is_int(it_config_load_file(&cfg, "/nonexistent/it.conf", err, sizeof(err)), -ENOENT, "missing file refused");

	/* The default path (no IMAGETOOLS_CONFIG): a file that is not there is
	 * skipped, one that cannot be read is an error naming it and why. */
	unsetenv("IMAGETOOLS_CONFIG");
	it_config_free(&cfg);
	if (access(IT_CONFIG_PATH, F_OK) != 0) {
		is_int(it_config_load(&cfg, IT_CONFIG_PATH, err, sizeof(err)), 0, "a missing default file is skipped");
	} else {
		ok(1, "a missing default file is skipped # SKIP " IT_CONFIG_PATH " exists here");
	}
	it_config_free(&cfg);
	is_int(it_config_load(&cfg, "/nonexistent/it.conf", err, sizeof(err)), -ENOENT,
	       "a missing file named by --config is not");
	ok(strstr(err, "/nonexistent/it.conf") && strstr(err, "No such file"), "the error names it: %s", err);
	it_config_free(&cfg);
	path = tap_write_tmp("threads = 3\n");
	{
		/* A path through a regular file cannot be looked at, even by root. */
		char below[64];
		snprintf(below, sizeof(below), "%s/imagetools.conf", path);
		is_int(it_config_load(&cfg, below, err, sizeof(err)), -ENOTDIR,
		       "a default path that cannot be looked at is an error");
		ok(strstr(err, below) && strstr(err, "Not a directory"), "naming the path and the reason: %s", err);
		it_config_free(&cfg);
	}
	if (geteuid() != 0) {
		chmod(path, 0);
		is_int(it_config_load(&cfg, path, err, sizeof(err)), -EACCES, "an unreadable default file is an error");
		ok(strstr(err, path) && strstr(err, "Permission denied"), "naming the path and the reason: %s", err);
		it_config_free(&cfg);
	} else {
		/* root reads every file: test_deploy_startup.py runs this case as www-data. */
		ok(1, "an unreadable default file is an error # SKIP root reads every file");
		ok(1, "naming the path and the reason # SKIP root reads every file");
	}
	unlink(path);
	it_config_defaults(&cfg);

	{
		char *envp[] = {"IMAGETOOLS_THREADS=16", "IMAGETOOLS_LOG_LEVEL=debug", "PATH=/bin", NULL};
		is_int(it_config_load_env(&cfg, envp, err, sizeof(err)), 0, "environment loads");
		is_int(cfg.threads, 16, "IMAGETOOLS_THREADS");
		is_str(cfg.log_level, "debug", "IMAGETOOLS_LOG_LEVEL");
	}
	{
		char *envp[] = {"IMAGETOOLS_NO_SUCH=1", NULL};
		is_int(it_config_load_env(&cfg, envp, err, sizeof(err)), -EINVAL, "unknown variable refused");
	}
	{
		char *envp[] = {"IMAGETOOLS_CONFIG=/etc/x.conf", NULL};
		is_int(it_config_load_env(&cfg, envp, err, sizeof(err)), 0, "IMAGETOOLS_CONFIG is not a setting");
	}
	is_int(it_config_set(&cfg, "max_upload_bytes", "99999999999999999999", err, sizeof(err)), -EINVAL,
	       "overflow refused");
	is_int(it_config_set(&cfg, "max_upload_bytes", "9223372036854775807G", err, sizeof(err)), -EINVAL,
	       "overflow through a suffix refused");
	is_int(it_config_set(&cfg, "public_url", "http://192.168.1.20:8080/imagetools/", err, sizeof(err)), 0,
	       "public_url takes an http URL with a port and a path");
	is_str(cfg.public_url, "http://192.168.1.20:8080/imagetools/", "public_url kept as given");
	is_int(it_config_set(&cfg, "public_url", "images.example.org", err, sizeof(err)), -EINVAL,
	       "public_url without a scheme refused");
	ok(strstr(err, "public_url") != NULL && strstr(err, "http://") != NULL, "the error names the key and the form");
	is_int(it_config_set(&cfg, "public_url", "https://", err, sizeof(err)), -EINVAL,
	       "public_url without a host refused");
	is_int(it_config_set(&cfg, "public_url", "https://x.example/?a=\"b", err, sizeof(err)), -EINVAL,
	       "public_url with a query or a quote refused");
	is_int(it_config_set(&cfg, "public_url", "", err, sizeof(err)), 0, "empty public_url allowed");
	it_config_free(&cfg);
	return tap_done();
}
