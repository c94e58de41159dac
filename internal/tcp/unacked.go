package tcp

import "math/bits"

// Without SO_PEEK_OFF (TCP sockets before Linux 6.9), host → namespace data
// is read off the socket for real, and a flow keeps its own copy of what it
// sent and the namespace has not acknowledged: the unacked ring. The package
// doc says why this, and not pasta's pre-6.9 peek from the queue's head.

// Ring sizes. A ring starts at minRing and doubles, when the namespace's
// window has room the ring has not, up to maxRing; all the rings of a table
// together grow only within ringBudget (the first minRing of each is always
// granted, so every flow moves). Rings are lent from the table's pool and
// given back when the flow ends or, idle and empty, at the next sweep.
const (
	minRing    = 16 << 10
	maxRing    = 4 << 20
	ringBudget = 256 << 20
	ringKeep   = 64 << 20 // empty rings the pool keeps for reuse, in bytes
	ringSizes  = 9        // minRing << 0 … minRing << 8 == maxRing
)

// unacked holds the bytes [sndUna, sndUna+n) of a flow in a ring.
type unacked struct {
	buf  []byte // len is a power of two; nil when the flow holds none
	head int    // index of the byte at sndUna
	n    int    // bytes held
}

// space returns how many more bytes the ring holds without growing.
func (u *unacked) space() int { return len(u.buf) - u.n }

// read copies the held bytes from offset off (from sndUna) into dst and
// returns how many it copied.
func (u *unacked) read(off int, dst []byte) int {
	n := min(len(dst), u.n-off)
	if n <= 0 {
		return 0
	}
	mask := len(u.buf) - 1
	start := (u.head + off) & mask
	c := copy(dst[:n], u.buf[start:])
	copy(dst[c:n], u.buf)
	return n
}

// write appends src, which must fit (space).
func (u *unacked) write(src []byte) {
	mask := len(u.buf) - 1
	end := (u.head + u.n) & mask
	c := copy(u.buf[end:], src)
	copy(u.buf, src[c:])
	u.n += len(src)
}

// drop forgets the k oldest bytes: the namespace acknowledged them.
func (u *unacked) drop(k int) {
	k = min(k, u.n)
	u.head = (u.head + k) & (len(u.buf) - 1)
	u.n -= k
	if u.n == 0 {
		u.head = 0
	}
}

// ringPool lends rings to flows: free lists by size, so that a table in
// steady state allocates nothing, and the count of bytes lent, against
// ringBudget.
type ringPool struct {
	free [ringSizes][][]byte
	kept int // bytes on the free lists
	lent int // bytes in flows' rings
}

func sizeClass(size int) int { return bits.Len(uint(size/minRing)) - 1 }

func (p *ringPool) get(size int) []byte {
	c := sizeClass(size)
	p.lent += size
	if l := len(p.free[c]); l > 0 {
		b := p.free[c][l-1]
		p.free[c] = p.free[c][:l-1]
		p.kept -= size
		return b
	}
	return make([]byte, size)
}

func (p *ringPool) put(b []byte) {
	if b == nil {
		return
	}
	p.lent -= len(b)
	if p.kept+len(b) > ringKeep {
		return // the garbage collector takes it
	}
	c := sizeClass(len(b))
	p.free[c] = append(p.free[c], b)
	p.kept += len(b)
}

// reserve makes room in u for want more bytes if it can: a first ring of
// at least minRing, or a larger one holding what u held (growTo). It
// returns the space u then has.
func (p *ringPool) reserve(u *unacked, want int) int {
	if u.space() >= want {
		return u.space()
	}
	size := p.growTo(u, want)
	if size == 0 {
		return u.space()
	}
	b := p.get(size)
	old := *u
	u.buf, u.head = b, 0
	u.n = old.read(0, b)
	p.put(old.buf)
	return u.space()
}

// growTo returns the size u's ring can take now to hold want more bytes, or
// 0 if it cannot grow: a power of two up to maxRing, the largest within
// ringBudget (a first ring of minRing is always granted).
func (p *ringPool) growTo(u *unacked, want int) int {
	size := min(max(minRing, 2*len(u.buf), 1<<bits.Len(uint(u.n+want-1))), maxRing)
	if u.buf == nil {
		for size > minRing && p.lent+size > ringBudget {
			size /= 2
		}
		return size
	}
	for size > len(u.buf) && p.lent+size-len(u.buf) > ringBudget {
		size /= 2
	}
	if size <= len(u.buf) {
		return 0
	}
	return size
}

// release gives u's ring back to the pool; u must hold nothing.
func (p *ringPool) release(u *unacked) {
	p.put(u.buf)
	*u = unacked{}
}
