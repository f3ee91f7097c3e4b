/* SVG line charts written directly (bench --plot): linear or log y axis, "nice" ticks, legend, escaped text.
 * Main thread only. */
#include "svg.h"

#include <errno.h>
#include <math.h>

/* Room inside a panel for tick labels (left), the x label (bottom) and the title (top). */
#define PAD_LEFT 70.0
#define PAD_BOTTOM 40.0
#define PAD_TOP 28.0
#define PAD_RIGHT 12.0
#define TICKS 5

static void text(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else
			fputc(*s, f);
	}
}

void rmq_svg_begin(FILE *f, int width, int height)
{
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
		"font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
		width, height, width, height);
}

int rmq_svg_end(FILE *f)
{
	fputs("</svg>\n", f);
	return ferror(f) ? -EIO : 0;
}

/* 1, 2 or 5 times a power of ten, near span / TICKS. */
static double nice_step(double span)
{
	double raw = span / TICKS, mag = pow(10, floor(log10(raw))), r = raw / mag;
	return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
}

static void label(FILE *f, double x, double y, const char *anchor, double v)
{
	char buf[32];
	if (fabs(v) >= 1e6)
		snprintf(buf, sizeof(buf), "%gM", v / 1e6);
	else if (fabs(v) >= 1e4)
		snprintf(buf, sizeof(buf), "%gk", v / 1e3);
	else
		snprintf(buf, sizeof(buf), "%g", v);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" fill=\"#444\">%s</text>\n", x, y, anchor, buf);
}

struct axes {
	double x0, x1, y0, y1;        /* data range (log10 of it for a log y axis) */
	double px, py, pw, ph;        /* plot area */
	bool logy;
};

static double sx(const struct axes *a, double x) { return a->px + (x - a->x0) / (a->x1 - a->x0) * a->pw; }
static double sy(const struct axes *a, double y)
{
	double v = a->logy ? log10(y) : y;
	return a->py + a->ph - (v - a->y0) / (a->y1 - a->y0) * a->ph;
}

static void ranges(struct axes *a, const struct rmq_svg_series *s, size_t ns)
{
	a->x0 = a->y0 = INFINITY;
	a->x1 = a->y1 = -INFINITY;
	for (size_t k = 0; k < ns; k++)
		for (size_t i = 0; i < s[k].n; i++) {
			double y = s[k].y[i];
			if (a->logy && y <= 0)
				continue;
			y = a->logy ? log10(y) : y;
			a->x0 = fmin(a->x0, s[k].x[i]);
			a->x1 = fmax(a->x1, s[k].x[i]);
			a->y0 = fmin(a->y0, y);
			a->y1 = fmax(a->y1, y);
		}
	if (!isfinite(a->x0)) {
		a->x0 = a->y0 = 0;
		a->x1 = a->y1 = 1;
	}
	if (a->logy) {
		a->y0 = floor(a->y0);
		a->y1 = fmax(ceil(a->y1), a->y0 + 1);
	} else {
		a->y0 = fmin(a->y0, 0);  /* rates and counts read best from zero */
		double step = nice_step(a->y1 > a->y0 ? a->y1 - a->y0 : 1);
		a->y1 = ceil(a->y1 / step) * step;
		if (a->y1 <= a->y0)
			a->y1 = a->y0 + step;
	}
	if (a->x1 <= a->x0)
		a->x1 = a->x0 + 1;
}

static void grid(FILE *f, const struct axes *a)
{
	double step = nice_step(a->x1 - a->x0);
	for (double x = ceil(a->x0 / step) * step; x <= a->x1 + step * 1e-9; x += step) {
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", sx(a, x), a->py,
			sx(a, x), a->py + a->ph);
		label(f, sx(a, x), a->py + a->ph + 16, "middle", x);
	}
	if (a->logy) {
		for (double d = a->y0; d <= a->y1; d++) {
			double y = sy(a, pow(10, d));
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", a->px, y,
				a->px + a->pw, y);
			label(f, a->px - 6, y + 4, "end", pow(10, d));
		}
		return;
	}
	step = nice_step(a->y1 - a->y0);
	for (double v = a->y0; v <= a->y1 + step * 1e-9; v += step) {
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", a->px, sy(a, v),
			a->px + a->pw, sy(a, v));
		label(f, a->px - 6, sy(a, v) + 4, "end", v);
	}
}

void rmq_svg_chart(FILE *f, const struct rmq_svg_panel *p, const struct rmq_svg_series *s, size_t ns)
{
	struct axes a = {.px = p->left + PAD_LEFT, .py = p->top + PAD_TOP, .pw = p->width - PAD_LEFT - PAD_RIGHT,
			 .ph = p->height - PAD_TOP - PAD_BOTTOM, .logy = p->logy};
	ranges(&a, s, ns);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" font-weight=\"bold\">", a.px, p->top + 18);
	text(f, p->title);
	fputs("</text>\n", f);
	grid(f, &a);
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n", a.px,
		a.py, a.pw, a.ph);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#444\">", a.px + a.pw / 2,
		p->top + p->height - 6);
	text(f, p->xlabel);
	fprintf(f, "</text>\n<text transform=\"translate(%.1f %.1f) rotate(-90)\" text-anchor=\"middle\" fill=\"#444\">",
		p->left + 14, a.py + a.ph / 2);
	text(f, p->ylabel);
	fputs("</text>\n", f);
	for (size_t k = 0; k < ns; k++) {
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"", s[k].color);
		for (size_t i = 0; i < s[k].n; i++)
			if (!p->logy || s[k].y[i] > 0)
				fprintf(f, "%.1f,%.1f ", sx(&a, s[k].x[i]), sy(&a, s[k].y[i]));
		fputs("\"/>\n", f);
		double ly = a.py + 14 + 16.0 * (double)k;
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>"
			"<text x=\"%.1f\" y=\"%.1f\">", a.px + a.pw - 120, ly - 4, a.px + a.pw - 100, ly - 4, s[k].color,
			a.px + a.pw - 94, ly);
		text(f, s[k].name);
		fputs("</text>\n", f);
	}
}
