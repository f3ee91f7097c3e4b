/* Unit tests for bench/svg.c: a chart is well-formed SVG with one polyline per series and every point on it, text
 * is escaped, and a log axis skips the points it cannot draw. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "svg.h"

static size_t count(const char *s, const char *needle)
{
	size_t n = 0;
	for (const char *p = s; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static char *render(const struct rmq_svg_panel *p, const struct rmq_svg_series *s, size_t ns)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	rmq_svg_begin(f, 900, 300);
	rmq_svg_chart(f, p, s, ns);
	cr_assert_eq(rmq_svg_end(f), 0);
	fclose(f);
	return buf;
}

Test(bench_svg, one_polyline_per_series_with_every_point)
{
	const double x[] = {1, 2, 3, 4}, a[] = {10, 20, 30, 40}, b[] = {5, 5, 5, 5};
	const struct rmq_svg_series s[] = {{"sent <all>", "#00f", x, a, 4}, {"received & kept", "#0f0", x, b, 4}};
	const struct rmq_svg_panel p = {0, 0, 900, 300, "throughput", "s", "msg/s", false};
	char *svg = render(&p, s, 2);
	cr_assert(!strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39), "%s", svg);
	cr_assert(strstr(svg, "</svg>\n"));
	cr_assert_eq(count(svg, "<polyline"), 2);
	cr_assert(strstr(svg, "sent &lt;all&gt;") && strstr(svg, "received &amp; kept"), "text must be escaped");
	cr_assert_null(strstr(svg, "<all>"));
	/* four points each: "x,y " four times inside each points="" */
	const char *pl = strstr(svg, "points=\"");
	cr_assert_eq(count(pl, ",") >= 8, 1);
	free(svg);
}

Test(bench_svg, log_axis_skips_non_positive_points)
{
	const double x[] = {1, 2, 3}, y[] = {0, 100, 1000};
	const struct rmq_svg_series s[] = {{"p99", "#f00", x, y, 3}};
	const struct rmq_svg_panel p = {0, 0, 900, 300, "latency", "s", "us", true};
	char *svg = render(&p, s, 1);
	const char *pts = strstr(svg, "points=\"") + 8;
	size_t n = 0;
	for (const char *q = pts; *q != '"'; q++)
		n += *q == ',';
	cr_assert_eq(n, 2, "the zero cannot be drawn on a log axis: %s", svg);
	cr_assert(strstr(svg, ">100<") && strstr(svg, ">1000<"), "decade ticks: %s", svg);
	free(svg);
}
