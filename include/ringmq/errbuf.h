/* One-line error reasons for loaders and parsers that report "file:line: what is wrong" to their caller.
 * Header-only; any thread (writes only into the caller's buffer). */
#ifndef RINGMQ_ERRBUF_H
#define RINGMQ_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* printf into err (NUL-terminated, cut to errlen); does nothing when err is NULL or errlen is 0. */
__attribute__((format(printf, 3, 4))) static inline void rmq_errbuf_printf(char *err, size_t errlen,
									 const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

#endif
