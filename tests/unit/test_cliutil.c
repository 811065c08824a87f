/* test_cliutil.c: unit tests for cli/cliutil (settings, credentials, URLs, Retry-After, backoff, problem messages). */
#include "config.h"

#include "cli/cliutil.h"
#include "tap.h"

#include <json-c/json.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/it-cliutil-XXXXXX";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
}

int main(void)
{
	char path[4200], conf[4300], err[600], msg[600];
	it_cli_conf c = {0};
	it_buf b;

	if (mkdtemp(dir) == NULL)
		return 1;

	/* Where the config file is looked for. */
	setenv("XDG_CONFIG_HOME", "/x/cfg", 1);
	setenv("HOME", "/home/u", 1);
	ok(it_cli_conf_path(path, sizeof(path)) == 0 && strcmp(path, "/x/cfg/imagetools/cli.conf") == 0,
	   "XDG_CONFIG_HOME is used");
	setenv("XDG_CONFIG_HOME", "relative", 1);
	it_cli_conf_path(path, sizeof(path));
	is_str(path, "/home/u/.config/imagetools/cli.conf", "a relative XDG_CONFIG_HOME is ignored");
	unsetenv("XDG_CONFIG_HOME");
	it_cli_conf_path(path, sizeof(path));
	is_str(path, "/home/u/.config/imagetools/cli.conf", "else ~/.config");

	/* The file format. */
	snprintf(conf, sizeof(conf), "%s/imagetools", dir);
	mkdir(conf, 0700);
	snprintf(conf, sizeof(conf), "%s/imagetools/cli.conf", dir);
	write_file(conf, "# my server\n\n  server = http://file:1  \nsession=\"fromfile\"\nsource = android_app\n");
	is_int(it_cli_conf_load_file(&c, conf, err, sizeof(err)), 0, "a valid file loads");
	is_str(c.server, "http://file:1", "spaces around values are trimmed");
	is_str(c.session, "fromfile", "double quotes are removed");
	is_str(c.source, "android_app", "source is read");
	it_cli_conf_free(&c);
	c.server = strdup("http://flag:2");
	it_cli_conf_load_file(&c, conf, err, sizeof(err));
	is_str(c.server, "http://flag:2", "a value set before (command line) wins over the file");
	it_cli_conf_free(&c);

	write_file(conf, "server = http://a\nsesion = typo\n");
	is_int(it_cli_conf_load_file(&c, conf, err, sizeof(err)), -1, "an unknown key is an error");
	ok(strstr(err, ":2:") && strstr(err, "sesion"), "the error names the line and key: %s", err);
	it_cli_conf_free(&c);
	write_file(conf, "just words\n");
	is_int(it_cli_conf_load_file(&c, conf, err, sizeof(err)), -1, "a line without = is an error");
	it_cli_conf_free(&c);
	is_int(it_cli_conf_load_file(&c, "/nonexistent/cli.conf", err, sizeof(err)), 0, "a missing file is fine");

	/* The CA file: the cacert key and --cacert, checked before any transfer. */
	write_file(conf, "cacert = \"/etc/private ca.pem\"\n");
	is_int(it_cli_conf_load_file(&c, conf, err, sizeof(err)), 0, "the cacert key is known");
	is_str(c.cacert, "/etc/private ca.pem", "cacert is read");
	it_cli_conf_free(&c);
	{
		it_cli_opts o = {0};
		char pem[4300];

		is_int(it_cli_option(&o, 'C', "/flag/ca.pem"), 0, "--cacert is one of the shared options");
		is_str(o.conf.cacert, "/flag/ca.pem", "--cacert sets the setting");
		it_cli_conf_free(&o.conf);
		is_int(it_cli_cacert_use(NULL, err, sizeof(err)), 0, "no CA file: the system's store");
		snprintf(pem, sizeof(pem), "%s/nope.pem", dir);
		is_int(it_cli_cacert_use(pem, err, sizeof(err)), -1, "a missing CA file is refused");
		ok(strstr(err, "nope.pem") && strstr(err, "No such file"), "and named with the reason: %s", err);
		write_file(pem, "hello\n");
		is_int(it_cli_cacert_use(pem, err, sizeof(err)), -1, "a CA file without a certificate is refused");
		ok(strstr(err, "no PEM certificate") != NULL, "and said so: %s", err);
		write_file(pem, "# the dev CA\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
		is_int(it_cli_cacert_use(pem, err, sizeof(err)), 0, "a PEM bundle is taken");
		unlink(pem);
		it_cli_cacert_use(NULL, err, sizeof(err));
	}
	ok(it_cli_tls_failure(CURLE_PEER_FAILED_VERIFICATION) && !it_cli_tls_failure(CURLE_COULDNT_CONNECT) &&
		   !it_cli_tls_failure(CURLE_OK),
	   "an unverifiable certificate is told from a connection failure");
	it_cli_tls_message(msg, sizeof(msg), CURLE_PEER_FAILED_VERIFICATION,
			   "SSL certificate problem: \x1b[2Jself-signed");
	ok(strstr(msg, "certificate cannot be verified") && strstr(msg, "--cacert") && strchr(msg, 0x1b) == NULL,
	   "the certificate message names the problem and --cacert, without control characters: %s", msg);

	/* Precedence: command line, environment, file. */
	write_file(conf, "server = http://file:1\nsession = fromfile\n");
	setenv("XDG_CONFIG_HOME", dir, 1);
	setenv("IMAGETOOLS_SESSION", "fromenv", 1);
	unsetenv("IMAGETOOLS_SERVER");
	unsetenv("IMAGETOOLS_SOURCE");
	is_int(it_cli_conf_resolve(&c, err, sizeof(err)), 0, "resolve");
	is_str(c.session, "fromenv", "the environment wins over the file");
	is_str(c.server, "http://file:1", "the file fills the rest");
	it_cli_conf_free(&c);
	c.session = strdup("fromflag");
	it_cli_conf_resolve(&c, err, sizeof(err));
	is_str(c.session, "fromflag", "the command line wins over the environment");
	it_cli_conf_free(&c);
	unsetenv("IMAGETOOLS_SESSION");

	/* Tokens: the file's token wins over its session id (what --pair saved is
	 * the newer credential); IMAGETOOLS_TOKEN over IMAGETOOLS_SESSION; a
	 * credential given on the command line over every token. */
	write_file(conf, "server = http://file:1\nsession = fromfile\ntoken = itk.fromfile\n");
	is_int(it_cli_conf_resolve(&c, err, sizeof(err)), 0, "resolve with a token in the file");
	is_str(c.session, "itk.fromfile", "the file's token wins over its session");
	ok(c.token == NULL, "and nothing is left in the token slot");
	it_cli_conf_free(&c);
	setenv("IMAGETOOLS_SESSION", "fromenv", 1);
	it_cli_conf_resolve(&c, err, sizeof(err));
	is_str(c.session, "fromenv", "the environment's session wins over the file's token");
	it_cli_conf_free(&c);
	setenv("IMAGETOOLS_TOKEN", "itk.fromenv", 1);
	it_cli_conf_resolve(&c, err, sizeof(err));
	is_str(c.session, "itk.fromenv", "IMAGETOOLS_TOKEN wins over IMAGETOOLS_SESSION");
	it_cli_conf_free(&c);
	c.session = strdup("fromflag");
	it_cli_conf_resolve(&c, err, sizeof(err));
	is_str(c.session, "fromflag", "the command line wins over IMAGETOOLS_TOKEN");
	it_cli_conf_free(&c);
	unsetenv("IMAGETOOLS_SESSION");
	unsetenv("IMAGETOOLS_TOKEN");

	/* The forms of credentials and codes. */
	is_int(it_cli_cred_kind("AbCdEf0123456789_-ghijklmnopqrst"), IT_CLI_CRED_SESSION, "a session id");
	is_int(it_cli_cred_kind("AbCdEf0123456789_-ghij"), IT_CLI_CRED_SESSION, "22 characters: a session id");
	is_int(it_cli_cred_kind("AbCdEf0123456789_-ghi"), IT_CLI_CRED_MALFORMED, "21: too short");
	is_int(it_cli_cred_kind("itk.AbCdEf0123456789_-ghijklmnopqrst"), IT_CLI_CRED_TOKEN, "a token");
	is_int(it_cli_cred_kind("itk.AbCdEf0123456789_-ghijklmnopqrs"), IT_CLI_CRED_MALFORMED, "a token cut short");
	is_int(it_cli_cred_kind("itk.AbCdEf0123456789_-ghijklmnopqrstu"), IT_CLI_CRED_MALFORMED, "one too long");
	is_int(it_cli_cred_kind("itk.AbCdEf0123456789_-ghijklmnopq st"), IT_CLI_CRED_MALFORMED, "a space");
	is_int(it_cli_cred_kind(""), IT_CLI_CRED_MALFORMED, "empty");
	ok(it_cli_pairing_code_valid("itp.Pq9rS8tUvWxYz012345ABC"), "a pairing code");
	ok(!it_cli_pairing_code_valid("itp.Pq9rS8tUvWxYz012345AB"), "a pairing code cut short");
	ok(!it_cli_pairing_code_valid("itk.Pq9rS8tUvWxYz012345ABC"), "a code with a token's prefix");

	/* What a refusal says about the credential. */
	{
		const char *tok = "{\"type\":\"urn:imagetools:problem:invalid-token\"}";
		const char *scope = "{\"type\":\"urn:imagetools:problem:insufficient-scope\"}";
		const char *used = "{\"type\":\"urn:imagetools:problem:pairing-code-used\"}";
		const char *req = "{\"type\":\"urn:imagetools:problem:credential-required\"}";

		is_int(it_cli_auth_problem(401, tok, strlen(tok)), IT_CLI_AUTH_TOKEN, "401 invalid-token");
		is_int(it_cli_auth_problem(403, scope, strlen(scope)), IT_CLI_AUTH_SCOPE, "403 insufficient-scope");
		is_int(it_cli_auth_problem(410, used, strlen(used)), IT_CLI_AUTH_TOKEN, "410 pairing-code-used");
		is_int(it_cli_auth_problem(401, req, strlen(req)), IT_CLI_AUTH_OTHER, "401 credential-required: other");
		is_int(it_cli_auth_problem(403, tok, strlen(tok)), IT_CLI_AUTH_OTHER, "a slug with the wrong status");
		is_int(it_cli_auth_problem(401, "<html>", 6), IT_CLI_AUTH_OTHER, "a proxy's 401 page");
		is_int(it_cli_auth_problem(401, NULL, 0), IT_CLI_AUTH_OTHER, "no body");
	}

	/* URLs. */
	it_buf_init(&b, 1024);
	is_int(it_cli_url(&b, "http://h:8080//", "/api/v1/images"), 0, "url");
	is_str(b.data, "http://h:8080/api/v1/images", "trailing slashes of the server are dropped");
	it_cli_url(&b, "https://h/prefix", "/api/v1/images");
	is_str(b.data, "https://h/prefix/api/v1/images", "a path prefix is kept");
	is_int(it_cli_url(&b, "ftp://h", "/x"), -1, "only http and https");
	is_int(it_cli_url(&b, "h:8080", "/api/v1/images"), 0, "host:port without a scheme is taken");
	is_str(b.data, "http://h:8080/api/v1/images", "... as http://");
	is_int(it_cli_url(&b, "/just/a/path", "/x"), -1, "a path without a host is refused");
	it_buf_reset(&b);
	it_cli_urlencode(&b, "aZ09-_.~ /&=?%");
	is_str(b.data, "aZ09-_.~%20%2F%26%3D%3F%25", "query values are percent-encoded");
	it_buf_free(&b);

	/* Retry-After. */
	is_int(it_cli_retry_after("3", 0), 3, "delta-seconds");
	is_int(it_cli_retry_after(" 120", 0), 120, "leading space");
	is_int(it_cli_retry_after("0", 0), 0, "zero");
	is_int(it_cli_retry_after(NULL, 0), -1, "absent");
	is_int(it_cli_retry_after("", 0), -1, "empty");
	is_int(it_cli_retry_after("-1", 0), -1, "negative is malformed");
	is_int(it_cli_retry_after("soon", 0), -1, "words are malformed");
	is_int(it_cli_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470), 10, "an HTTP-date 10 s ahead");
	is_int(it_cli_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490), 0, "an HTTP-date in the past");

	/* Backoff: doubles, capped, jitter takes at most half off. */
	is_int(it_cli_backoff_ms(0, 1000, 60000, 0.0), 1000, "first delay is the base");
	is_int(it_cli_backoff_ms(1, 1000, 60000, 0.0), 2000, "doubles");
	is_int(it_cli_backoff_ms(3, 1000, 60000, 0.0), 8000, "doubles again");
	is_int(it_cli_backoff_ms(10, 1000, 60000, 0.0), 60000, "capped");
	is_int(it_cli_backoff_ms(4000000000u, 1000, 60000, 0.0), 60000, "no overflow on huge attempts");
	is_int(it_cli_backoff_ms(0, 1000, 60000, 0.999), 501, "jitter takes at most half");
	/* The wait before a retry: Retry-After first, capped; else backoff. */
	is_int(it_cli_retry_wait_ms("3", 0, 1000, 60000), 3000, "Retry-After in seconds");
	is_int(it_cli_retry_wait_ms("0", 5, 1000, 60000), 0, "Retry-After 0 wins over backoff");
	is_int(it_cli_retry_wait_ms("999", 0, 1000, 60000), 60000, "Retry-After capped at the longest wait");
	is_int(it_cli_retry_wait_ms("9999999999", 0, 1000, 300000), 300000, "an absurd Retry-After is capped");
	{
		long w0 = it_cli_retry_wait_ms(NULL, 0, 1000, 60000), w3 = it_cli_retry_wait_ms("soon", 3, 1000, 60000);

		ok(w0 >= 500 && w0 <= 1000, "no Retry-After: the first backoff delay");
		ok(w3 >= 4000 && w3 <= 8000, "a malformed Retry-After: backoff");
	}
	for (int i = 0; i < 1000; i++) {
		double r = it_cli_random();
		if (r < 0 || r >= 1) {
			ok(0, "random in [0, 1)");
			break;
		}
	}

	/* Problem messages. */
	{
		const char *p = "{\"type\":\"urn:imagetools:problem:too-large\",\"title\":\"Payload Too Large\","
				"\"status\":413,\"detail\":\"The file is larger than 50 MiB.\"}";
		it_cli_problem_message(p, strlen(p), 413, msg, sizeof(msg));
		is_str(msg, "Payload Too Large (HTTP 413): The file is larger than 50 MiB.", "title and detail");
		it_cli_problem_type(p, strlen(p), msg, sizeof(msg));
		is_str(msg, "urn:imagetools:problem:too-large", "type");
		it_cli_problem_message("<html>bad gateway</html>", 24, 502, msg, sizeof(msg));
		is_str(msg, "HTTP 502", "not JSON: the status alone");
		p = "{\"title\":\"x\\u001b[2Jy\",\"detail\":\"a\\nb\"}";
		it_cli_problem_message(p, strlen(p), 400, msg, sizeof(msg));
		is_str(msg, "x?[2Jy (HTTP 400): a?b", "control characters from the server are replaced");
		it_cli_problem_message(NULL, 0, 503, msg, sizeof(msg));
		is_str(msg, "HTTP 503", "no body");
		it_cli_problem_type("[1]", 3, msg, sizeof(msg));
		is_str(msg, "", "not an object: no type");
	}

	/* A body parsed as one JSON object, or nothing. */
	{
		json_object *j = it_cli_json_object("{\"a\":1}", 7);

		ok(j && json_object_is_type(j, json_type_object), "an object");
		json_object_put(j);
		ok(it_cli_json_object("[1]", 3) == NULL, "an array is not an object");
		ok(it_cli_json_object("{\"a\":", 5) == NULL, "a cut object is nothing");
		ok(it_cli_json_object(NULL, 0) == NULL, "no body");
	}

	/* A setting given twice: the last one wins, the first is freed. */
	{
		char *slot = NULL;

		it_cli_conf_set(&slot, "first");
		it_cli_conf_set(&slot, "second");
		is_str(slot, "second", "the last value wins");
		free(slot);
	}

	/* Both settings must be there. */
	{
		it_cli_conf k = {0};

		ok(it_cli_conf_complete(&k, "test") < 0, "no server, no credential: incomplete");
		k.server = "http://h";
		ok(it_cli_conf_complete(&k, "test") < 0, "no credential: incomplete");
		k.session = "s";
		ok(it_cli_conf_complete(&k, "test") == 0, "server and credential: complete");
	}

	/* SIGTERM asks the program to stop instead of ending it. */
	it_cli_catch_stop();
	ok(it_cli_stop == 0, "not stopped before a signal");
	raise(SIGTERM);
	ok(it_cli_stop == 1, "SIGTERM sets it_cli_stop");

	/* mkdir -p, private. */
	{
		char deep[4400];
		struct stat st;

		snprintf(deep, sizeof(deep), "%s/a/b/c", dir);
		ok(it_cli_make_dirs(deep) == 0 && stat(deep, &st) == 0 && S_ISDIR(st.st_mode),
		   "missing directories are made");
		is_int(st.st_mode & 0777, 0700, "with mode 0700");
		ok(it_cli_make_dirs(deep) == 0, "existing directories are fine");
		snprintf(deep, sizeof(deep), "%s/f", dir);
		write_file(deep, "");
		snprintf(deep, sizeof(deep), "%s/f/x", dir);
		ok(it_cli_make_dirs(deep) < 0, "a file in the way is an error");
		snprintf(deep, sizeof(deep), "%s/f", dir);
		unlink(deep);
		ok(it_cli_make_dirs("") < 0, "an empty path is refused");
		snprintf(deep, sizeof(deep), "%s/a/b/c", dir);
		rmdir(deep);
		snprintf(deep, sizeof(deep), "%s/a/b", dir);
		rmdir(deep);
		snprintf(deep, sizeof(deep), "%s/a", dir);
		rmdir(deep);
	}

	unlink(conf);
	snprintf(conf, sizeof(conf), "%s/imagetools", dir);
	rmdir(conf);
	rmdir(dir);
	return tap_done();
}
