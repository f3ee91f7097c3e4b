/* libFuzzer target for the PROXY protocol parser (core/io/proxy_proto.c): every prefix of the input obeys the
 * parser's contract (refusal and success are final, lengths bounded). Fuzzer thread only. */
#include <stdio.h>
#include <stdlib.h>

#include "io/proxy_proto.h"

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "fuzz_proxy: %s:%d: %s\n", __FILE__, __LINE__, #cond);       \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rmq_proxy_hdr h;
	int first = 0;
	for (size_t k = 0; k <= size && k <= RMQ_PROXY_MAX_LEN + 1; k++) {
		int rc = rmq_proxy_parse(data, k, &h);
		CHECK(rc <= (int)k && rc <= RMQ_PROXY_MAX_LEN);
		CHECK(rc != 0 || k < RMQ_PROXY_MAX_LEN);
		if (rc > 0 && h.has_addr) {
			char s[64];
			CHECK(rmq_proxy_addr_str(&h.src, s, sizeof(s)) > 0);
		}
		if (first == 0)
			first = rc;
		else
			CHECK(first > 0 ? rc == first : rc < 0);
	}
	return 0;
}
