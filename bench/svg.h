/* A small SVG line-chart writer for ringmq-bench --plot (no gnuplot needed): panels with axes, ticks, a legend.
 * Main thread only (writes to the FILE it is given). */
#ifndef RMQ_BENCH_SVG_H
#define RMQ_BENCH_SVG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct rmq_svg_series {
	const char *name;
	const char *color;      /* CSS colour */
	const double *x, *y;    /* n points; with a log y axis, points with y <= 0 are skipped */
	size_t n;
};

struct rmq_svg_panel {
	double left, top, width, height;   /* the panel's box in the document, pixels */
	const char *title, *xlabel, *ylabel;
	bool logy;
};

/* Opens an SVG document of width x height pixels with a white background. */
void rmq_svg_begin(FILE *f, int width, int height);
/* One chart: axes scaled to the data, about five ticks each way (decades on a log axis), a legend. */
void rmq_svg_chart(FILE *f, const struct rmq_svg_panel *p, const struct rmq_svg_series *s, size_t ns);
/* Closes the document; 0, or -EIO when a write failed. */
int rmq_svg_end(FILE *f);

#endif
