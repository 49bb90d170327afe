package fit

import (
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// PlotSweep draws held-out error against code width (with the PCA closed
// form for a linear model) and marks the elbow, as an image file whose
// format follows path's extension (.png, .svg, .pdf).
func PlotSweep(sw *Sweep, title, path string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "code width k"
	p.Y.Label.Text = "mean squared reconstruction error"
	held := plotter.XYs{{X: 0, Y: sw.Total}}
	var closed plotter.XYs
	for _, r := range sw.Rows {
		held = append(held, plotter.XY{X: float64(r.K), Y: r.HeldOut})
		if r.Linear {
			closed = append(closed, plotter.XY{X: float64(r.K), Y: r.Closed})
		}
	}
	l, pts, err := plotter.NewLinePoints(held)
	if err != nil {
		return err
	}
	l.Color = plotter.DefaultLineStyle.Color
	l.Width = vg.Points(2)
	pts.Shape = draw.CircleGlyph{}
	p.Add(l, pts)
	p.Legend.Add("held-out error", l, pts)
	if len(closed) > 0 {
		cl, err := plotter.NewLine(closed)
		if err != nil {
			return err
		}
		cl.Dashes = []vg.Length{vg.Points(5), vg.Points(4)}
		cl.Color = plotColor(200, 60, 40)
		p.Add(cl)
		p.Legend.Add("PCA closed form (training rows)", cl)
	}
	for _, r := range sw.Rows {
		if r.K != sw.Elbow {
			continue
		}
		e, err := plotter.NewScatter(plotter.XYs{{X: float64(r.K), Y: r.HeldOut}})
		if err != nil {
			return err
		}
		e.Shape = draw.RingGlyph{}
		e.Radius = vg.Points(9)
		e.Color = plotColor(220, 20, 60)
		p.Add(e)
		labels, err := plotter.NewLabels(plotter.XYLabels{
			XYs:    plotter.XYs{{X: float64(r.K), Y: r.HeldOut}},
			Labels: []string{fmt.Sprintf("   elbow: k = %d", r.K)},
		})
		if err != nil {
			return err
		}
		labels.TextStyle[0].Color = plotColor(220, 20, 60)
		p.Add(labels)
		p.Legend.Add(fmt.Sprintf("suggested k = %d", r.K), e)
	}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	if err := p.Save(7*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("write plot %s: %w", path, err)
	}
	return nil
}
