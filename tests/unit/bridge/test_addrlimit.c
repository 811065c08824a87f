/* test_addrlimit.c: unit tests of the bridge's per-address connection rate limit. */
#include "config.h"

#include "bridge/addrlimit.h"

#include "tap.h"

int main(void)
{
	it_addrlimit rl;
	int i, allowed = 0;

	it_addrlimit_init(&rl, 3, 60.0, 2);
	ok(rl.keys.buckets == NULL && rl.keys.count == 0, "init allocates nothing");
	for (i = 0; i < 5; i++)
		allowed += it_addrlimit_hit(&rl, "10.0.0.1", 100.0 + i) == 0;
	is_int(allowed, 3, "three hits allowed in a window, then refused");
	is_int(it_addrlimit_hit(&rl, "10.0.0.1", 130.0), 30, "refusal says how long until the window ends");
	is_int(it_addrlimit_hit(&rl, "10.0.0.2", 130.0), 0, "another key has its own window");
	is_int(it_addrlimit_hit(&rl, "10.0.0.1", 160.5), 0, "allowed again in the next window");
	/* max_keys 2: a third key shares the overflow counter. */
	allowed = 0;
	for (i = 0; i < 5; i++) {
		char key[32];
		snprintf(key, sizeof(key), "192.0.2.%d", i);
		allowed += it_addrlimit_hit(&rl, key, 161.0) == 0;
	}
	is_int(allowed, 3, "distinct keys past max_keys share one counter");
	is_int(rl.keys.count, 2, "the table did not grow past max_keys");
	it_addrlimit_prune(&rl, 300.0);
	is_int(rl.keys.count, 0, "prune forgets finished windows");
	it_addrlimit_free(&rl);

	/* peek: a failure counter is looked at before the attempt, and
	 * only a failure is counted. */
	it_addrlimit_init(&rl, 2, 60.0, 10);
	is_int(it_addrlimit_peek(&rl, "10.0.0.9", 10.0), 0, "peek at an unknown key: room");
	it_addrlimit_hit(&rl, "10.0.0.9", 10.0);
	is_int(it_addrlimit_peek(&rl, "10.0.0.9", 11.0), 0, "one of two used: room");
	it_addrlimit_hit(&rl, "10.0.0.9", 11.0);
	is_int(it_addrlimit_peek(&rl, "10.0.0.9", 12.0), 58, "used up: peek says how long to wait");
	is_int(it_addrlimit_peek(&rl, "10.0.0.9", 12.0), 58, "and peeking counts nothing");
	is_int(it_addrlimit_peek(&rl, "10.0.0.9", 70.5), 0, "the next window has room");
	it_addrlimit_free(&rl);

	it_addrlimit_init(&rl, 0, 60.0, 10);
	allowed = 0;
	for (i = 0; i < 1000; i++)
		allowed += it_addrlimit_hit(&rl, "x", 1.0) == 0;
	is_int(allowed, 1000, "limit 0 allows everything");
	it_addrlimit_free(&rl);
	return tap_done();
}
