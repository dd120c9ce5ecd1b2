package main

import (
	"fmt"
	"image/color"
	"math"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Okabe and Ito's palette, which readers with a colour vision deficiency
// tell apart.
var (
	plotBlue      = color.RGBA{0x00, 0x72, 0xb2, 0xff}
	plotOrange    = color.RGBA{0xe6, 0x9f, 0x00, 0xff}
	plotGreen     = color.RGBA{0x00, 0x9e, 0x73, 0xff}
	plotVermilion = color.RGBA{0xd5, 0x5e, 0x00, 0xff}
	plotPurple    = color.RGBA{0xcc, 0x79, 0xa7, 0xff}
	plotSky       = color.RGBA{0x56, 0xb4, 0xe9, 0xff}
	plotBlack     = color.RGBA{0x00, 0x00, 0x00, 0xff}
	plotGrey      = color.RGBA{0x55, 0x55, 0x55, 0xff}
	plotLightGrey = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	plotWhite     = color.RGBA{0xff, 0xff, 0xff, 0xff}

	series = []color.RGBA{plotBlue, plotOrange, plotGreen, plotVermilion, plotPurple, plotSky}
)

var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

func init() {
	plot.DefaultFont = sans
	plotter.DefaultFont = sans
}

func textStyle(size float64) text.Style {
	f := sans
	f.Size = vg.Points(size)
	return text.Style{Color: plotBlack, Font: f, Handler: plot.DefaultTextHandler}
}

// newPlot returns a plot with the axis labels given, in the figure's
// font sizes.
func newPlot(title, xlabel, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(11)
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	p.X.Label.TextStyle.Font.Size = vg.Points(10)
	p.Y.Label.TextStyle.Font.Size = vg.Points(10)
	p.X.Tick.Label.Font.Size = vg.Points(9.5)
	p.Y.Tick.Label.Font.Size = vg.Points(9.5)
	return p
}

// grid returns horizontal grid lines (vertical ones too with both).
func grid(both bool) *plotter.Grid {
	g := plotter.NewGrid()
	g.Horizontal.Color = plotLightGrey
	g.Horizontal.Width = vg.Points(0.5)
	g.Vertical.Color = plotLightGrey
	g.Vertical.Width = vg.Points(0.5)
	if !both {
		g.Vertical.Width = 0
	}
	return g
}

// suffixTicks is plot.DefaultTicks with suffix after every label.
func suffixTicks(suffix string) plot.Ticker {
	return plot.TickerFunc(func(min, max float64) []plot.Tick {
		ticks := plot.DefaultTicks{}.Ticks(min, max)
		for i := range ticks {
			if ticks[i].Label != "" {
				ticks[i].Label += suffix
			}
		}
		return ticks
	})
}

// log10Ticks labels, on an axis of log10(v), v = 1, 2 and 5 times each
// power of ten between 10^min and 10^max, suffix after each, with minor
// ticks at the other multiples.
func log10Ticks(suffix string) plot.Ticker {
	return plot.TickerFunc(func(min, max float64) []plot.Tick {
		var ticks []plot.Tick
		for e := math.Floor(min); e <= math.Ceil(max); e++ {
			for m := 1.0; m < 10; m++ {
				v := m * math.Pow(10, e)
				if math.Log10(v) < min || math.Log10(v) > max {
					continue
				}
				t := plot.Tick{Value: math.Log10(v)}
				if m == 1 || m == 2 || m == 5 {
					t.Label = strconv.FormatFloat(v, 'f', -1, 64) + suffix
				}
				ticks = append(ticks, t)
			}
		}
		return ticks
	})
}

// lineStyle is a line style of width w pt, dashed when dash is set.
func lineStyle(c color.Color, w float64, dash bool) draw.LineStyle {
	s := draw.LineStyle{Color: c, Width: vg.Points(w)}
	if dash {
		s.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	return s
}

// labels returns text at (x, y), centred above it by dy points.
func labels(xs, ys []float64, ss []string, size, dy float64) (*plotter.Labels, error) {
	xy := plotter.XYLabels{XYs: make(plotter.XYs, len(xs)), Labels: ss}
	for i := range xs {
		xy.XYs[i] = plotter.XY{X: xs[i], Y: ys[i]}
	}
	l, err := plotter.NewLabels(xy)
	if err != nil {
		return nil, err
	}
	for i := range l.TextStyle {
		l.TextStyle[i] = textStyle(size)
		l.TextStyle[i].XAlign = text.XCenter
	}
	l.Offset = vg.Point{Y: vg.Points(dy)}
	return l, nil
}

// ms formats milliseconds as the README does: "47 ms", "1.175 s".
func ms(v float64) string {
	if math.Abs(v) >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', 3, 64) + " s"
	}
	return fmt.Sprintf("%.0f ms", v)
}

// human formats a Go duration ("0s", "20ms", "1s") as "0", "20 ms", "1 s".
func human(d string) string {
	v, err := time.ParseDuration(d)
	if err != nil {
		return d
	}
	switch {
	case v == 0:
		return "0"
	case v%time.Second == 0:
		return fmt.Sprintf("%d s", v/time.Second)
	case v%time.Millisecond == 0:
		return fmt.Sprintf("%d ms", v/time.Millisecond)
	}
	return strings.TrimSpace(v.String())
}
