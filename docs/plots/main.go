// Command plots draws the benchmark charts of BENCHMARKS.md and the
// README from the committed output of `make benchdata`:
//
//	cd docs/plots && go run . -in ../bench -out ..
//
// It reads overhead.txt, tail.txt, failover.txt and session.txt (plain
// `go test -bench` output) from -in and writes overhead.svg,
// tail-latency.svg, failover.svg and session-share.svg to -out. It runs
// no benchmark, and the same input gives byte-identical files.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

var nan = math.NaN()

// A chart turns one benchmark output file into one SVG.
type chart struct {
	in, out string
	draw    func(*benchFile) (*figure, error)
}

var charts = []chart{
	{"overhead.txt", "overhead.svg", overheadChart},
	{"tail.txt", "tail-latency.svg", tailChart},
	{"failover.txt", "failover.svg", failoverChart},
	{"session.txt", "session-share.svg", sessionChart},
}

func main() {
	in := flag.String("in", "../bench", "folder of the benchmark output files")
	out := flag.String("out", "..", "folder to write the SVG files to")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "plots:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	for _, c := range charts {
		f, err := os.Open(filepath.Join(in, c.in))
		if err != nil {
			return err
		}
		bf, err := parse(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", c.in, err)
		}
		fig, err := c.draw(bf)
		if err != nil {
			return fmt.Errorf("%s: %w", c.in, err)
		}
		svg, err := fig.svg()
		if err != nil {
			return fmt.Errorf("%s: %w", c.out, err)
		}
		path := filepath.Join(out, c.out)
		if err := os.WriteFile(path, svg, 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", path)
	}
	return nil
}

// A figure is a title over a legend, one or more plots side by side, and
// a note under them.
type figure struct {
	title, note string
	legend      []legendEntry
	plots       []*plot.Plot
	w, h        vg.Length
}

// A legendEntry is a legend's text after the thumbnails of what it names.
type legendEntry struct {
	text   string
	thumbs []plot.Thumbnailer
}

func (f *figure) add(text string, thumbs ...plot.Thumbnailer) {
	f.legend = append(f.legend, legendEntry{text, thumbs})
}

const (
	titleSize  = 13
	legendSize = 9
	noteSize   = 8.5
	lineGap    = 1.35 // line height, in font sizes
)

// svg draws the figure. Its text names Liberation Sans (gonum's font,
// whose metrics placed the text), then Arial, metric-compatible with it,
// and sans-serif, for viewers that lack it.
func (f *figure) svg() ([]byte, error) {
	c := vgsvg.New(f.w, f.h)
	dc := draw.New(c)
	dc.SetColor(plotWhite)
	dc.Fill(dc.Rectangle.Path())

	pad := vg.Points(10)
	left, right, top := dc.Min.X+pad, dc.Max.X-pad, dc.Max.Y-pad
	sty := textStyle(titleSize)
	for _, line := range strings.Split(f.title, "\n") {
		for _, l := range wrap(sty, line, right-left) {
			top -= vg.Points(sty.Font.Size.Points() * lineGap)
			dc.FillText(sty, vg.Point{X: left, Y: top}, l)
		}
		sty = textStyle(legendSize + 1)
	}
	top = f.drawLegend(dc, left, right, top-vg.Points(6))

	bottom := dc.Min.Y + pad
	if f.note != "" {
		sty := textStyle(noteSize)
		sty.Color = plotGrey
		var lines []string
		for _, line := range strings.Split(f.note, "\n") {
			lines = append(lines, wrap(sty, line, right-left)...)
		}
		for i := len(lines) - 1; i >= 0; i-- {
			dc.FillText(sty, vg.Point{X: left, Y: bottom}, lines[i])
			bottom += vg.Points(noteSize * lineGap)
		}
		bottom += vg.Points(4)
	}
	area := draw.Crop(dc, pad, -pad, bottom-dc.Min.Y, top-dc.Max.Y-vg.Points(4))
	tiles := draw.Tiles{Rows: 1, Cols: len(f.plots), PadX: vg.Points(18)}
	for i, p := range f.plots {
		p.Draw(tiles.At(area, i, 0)) // side by side plots share their axes' set-up
	}

	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return nil, err
	}
	return bytes.ReplaceAll(buf.Bytes(),
		[]byte("font-family:Liberation Sans;"),
		[]byte("font-family:Liberation Sans,Arial,Helvetica,sans-serif;")), nil
}

// drawLegend lays the legend's entries out in rows from (left, top) to
// right, and returns the y under the last row.
func (f *figure) drawLegend(dc draw.Canvas, left, right, top vg.Length) vg.Length {
	if len(f.legend) == 0 {
		return top
	}
	sty := textStyle(legendSize)
	thumb, gap, sep := vg.Points(18), vg.Points(4), vg.Points(16)
	row := vg.Points(legendSize * 1.6)
	x, y := left, top-row
	for _, e := range f.legend {
		w := thumb + gap + sty.Width(e.text)
		if x > left && x+w > right {
			x, y = left, y-row
		}
		icon := draw.Crop(dc, 0, 0, 0, 0)
		icon.Rectangle = vg.Rectangle{
			Min: vg.Point{X: x, Y: y - vg.Points(legendSize*0.15)},
			Max: vg.Point{X: x + thumb, Y: y + vg.Points(legendSize*0.85)},
		}
		for _, t := range e.thumbs {
			t.Thumbnail(&icon)
		}
		dc.FillText(sty, vg.Point{X: x + thumb + gap, Y: y}, e.text)
		x += w + sep
	}
	return y - vg.Points(legendSize*0.4)
}

// wrap breaks text at spaces into lines no wider than width.
func wrap(sty text.Style, txt string, width vg.Length) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(txt) {
		if line != "" && sty.Width(line+" "+word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}
