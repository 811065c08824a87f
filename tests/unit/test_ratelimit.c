/* test_ratelimit.c: unit tests for db/ratelimit's pure helpers: the text parameters of a bucket and the whole seconds
 * of a Retry-After. */
#include "config.h"

#include "db/ratelimit.h"
#include "tap.h"

int main(void)
{
	it_ratelimit_bucket b;

	it_ratelimit_bucket_init(&b, "sessions", "192.0.2.7", 30);
	is_str(b.key, "sessions:192.0.2.7", "the key is kind:subject");
	is_str(b.cap, "30", "the capacity is a minute's allowance");
	is_str(b.rate, "0.5", "the refill rate is per second");

	it_ratelimit_bucket_init(&b, "uploads", NULL, 7);
	is_str(b.key, "uploads:-", "no subject: -");
	is_str(b.rate, "0.116666667", "a rate keeps nine digits");

	it_ratelimit_bucket_init(&b, "credential_failures", "x", -5);
	is_str(b.cap, "0", "a negative limit is 0");
	is_str(b.rate, "0", "and refills nothing");

	is_int((int)it_ratelimit_retry_after(0.0), 1, "no wait left still says 1 second");
	is_int((int)it_ratelimit_retry_after(0.2), 1, "a fraction is 1");
	is_int((int)it_ratelimit_retry_after(1.0), 1, "a whole second stays");
	is_int((int)it_ratelimit_retry_after(1.01), 2, "anything above is rounded up");
	is_int((int)it_ratelimit_retry_after(59.5), 60, "up to the next whole second");
	return tap_done();
}
