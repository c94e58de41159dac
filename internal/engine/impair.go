package engine

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/nsgate/nsgate/internal/packet"
)

// Impairment makes the tap lossy and out of order, for tests of loss
// recovery: the kernel here has no sch_netem, so nsgate can degrade its own
// tap leg instead. Both directions are affected: frames read from the
// namespace and frames written to it. It is configured only through the
// NSGATE_TEST_IMPAIR environment variable (see ParseImpairment) and costs
// nothing when off.
type Impairment struct {
	Loss    float64 // probability that a frame is dropped
	Reorder float64 // probability that a frame is held back behind the next
	Seed    uint64
}

// ParseImpairment parses "loss=0.01,reorder=0.01,seed=1".
func ParseImpairment(s string) (Impairment, error) {
	var im Impairment
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return im, fmt.Errorf("impairment %q: want key=value", kv)
		}
		var err error
		switch k {
		case "loss":
			im.Loss, err = strconv.ParseFloat(v, 64)
		case "reorder":
			im.Reorder, err = strconv.ParseFloat(v, 64)
		case "seed":
			im.Seed, err = strconv.ParseUint(v, 10, 64)
		default:
			err = fmt.Errorf("unknown key")
		}
		if err != nil {
			return im, fmt.Errorf("impairment %q: %w", kv, err)
		}
	}
	return im, nil
}

// impairedTap wraps a Tap. A reordered frame is copied aside and delivered
// right after the next one.
type impairedTap struct {
	Tap
	im  Impairment
	rnd *rand.Rand

	heldIn         []byte // a frame from the namespace, held back
	heldInN        int
	releaseIn      bool // deliver heldIn on the next Read
	heldOut        []byte
	heldOutOffload packet.Offload
	heldOutOK      bool
}

func newImpairedTap(t Tap, im Impairment) *impairedTap {
	size := t.Headroom() + 65535 + 14
	return &impairedTap{
		Tap:     t,
		im:      im,
		rnd:     rand.New(rand.NewPCG(im.Seed, im.Seed^0x9e3779b97f4a7c15)),
		heldIn:  make([]byte, size),
		heldOut: make([]byte, 0, size),
	}
}

func (d *impairedTap) Read(buf []byte) (int, error) {
	if d.releaseIn {
		d.releaseIn = false
		n := copy(buf, d.heldIn[:d.heldInN])
		d.heldInN = 0
		return n - d.Headroom(), nil
	}
	for {
		n, err := d.Tap.Read(buf)
		if err != nil {
			if d.heldInN > 0 { // nothing newer: deliver the held frame
				d.releaseIn = true
				return d.Read(buf)
			}
			return n, err
		}
		if d.rnd.Float64() < d.im.Loss {
			continue
		}
		if d.heldInN == 0 && d.rnd.Float64() < d.im.Reorder {
			d.heldInN = copy(d.heldIn, buf[:d.Headroom()+n])
			continue
		}
		d.releaseIn = d.heldInN > 0
		return n, nil
	}
}

func (d *impairedTap) Write(buf []byte, o packet.Offload) error {
	if d.rnd.Float64() < d.im.Loss {
		return nil
	}
	if !d.heldOutOK && d.rnd.Float64() < d.im.Reorder {
		d.heldOut = append(d.heldOut[:0], buf...)
		d.heldOutOffload = o
		d.heldOutOK = true
		return nil
	}
	if err := d.Tap.Write(buf, o); err != nil {
		return err
	}
	if d.heldOutOK {
		d.heldOutOK = false
		return d.Tap.Write(d.heldOut, d.heldOutOffload)
	}
	return nil
}
