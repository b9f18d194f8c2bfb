package report

import (
	"image/color"

	"gonum.org/v1/plot/vg/draw"
)

// okabeIto is Okabe and Ito's qualitative palette, told apart by readers
// with any common colour vision (black moved last, where it reads as the
// frame's colour).
var okabeIto = []color.Color{
	color.RGBA{0xE6, 0x9F, 0x00, 0xFF}, // orange
	color.RGBA{0x56, 0xB4, 0xE9, 0xFF}, // sky blue
	color.RGBA{0x00, 0x9E, 0x73, 0xFF}, // bluish green
	color.RGBA{0xCC, 0x79, 0xA7, 0xFF}, // reddish purple
	color.RGBA{0x00, 0x72, 0xB2, 0xFF}, // blue
	color.RGBA{0xD5, 0x5E, 0x00, 0xFF}, // vermillion
	color.RGBA{0xF0, 0xE4, 0x42, 0xFF}, // yellow
	color.RGBA{0x00, 0x00, 0x00, 0xFF}, // black
}

// seriesColor is series i's colour: the palette's, round and round.
func seriesColor(i int) color.Color { return okabeIto[i%len(okabeIto)] }

// seriesShape is series i's marker. Shapes change with each series and
// repeat only after colours and shapes have both cycled (8 x 6 series),
// so two series never share both.
func seriesShape(i int) draw.GlyphDrawer {
	shapes := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{},
		draw.RingGlyph{}, draw.BoxGlyph{}, draw.PyramidGlyph{}}
	return shapes[(i+i/len(okabeIto))%len(shapes)]
}
