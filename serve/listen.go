package serve

import (
	"container/list"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// limitListener bounds the connections a listener hands out.
//
// At most total are open at once. A connection that has not sent a whole
// request header yet, or sits idle between requests, holds its slot only
// until a new connection needs it: at the bound the oldest such
// connection is closed to make room. Slow-header clients (slowloris) thus
// push out one another, never a client that sends its request, and a new
// client is accepted at once; only when every open connection is busy
// with a request does Accept wait, the rest waiting in the kernel's queue
// where they hold no descriptor of ours.
//
// At most perClient come from one address: the one over is answered 429
// with the error object and closed, so a single client cannot take every
// slot.
func limitListener(ln net.Listener, total, perClient int) *limited {
	return &limited{Listener: ln, slots: make(chan struct{}, total), perClient: perClient,
		byClient: map[string]int{}, closed: make(chan struct{}), refusing: make(chan struct{}, maxRefusing)}
}

// maxRefusing bounds the 429 answers being written at once; past it a
// connection over its client's bound is closed without one.
const maxRefusing = 256

type limited struct {
	net.Listener
	slots     chan struct{}
	perClient int
	refusing  chan struct{}

	mu        sync.Mutex
	byClient  map[string]int
	waiting   list.List // *limitedConn with no request under way, oldest first
	closeOnce sync.Once
	closed    chan struct{}
}

func (l *limited) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := clientOf(c)
		l.mu.Lock()
		over := l.byClient[host] >= l.perClient
		if !over {
			l.byClient[host]++
		}
		l.mu.Unlock()
		if over {
			select {
			case l.refusing <- struct{}{}:
				go func() { refuse(c, l.perClient); <-l.refusing }()
			default:
				c.Close()
			}
			continue
		}
		// A slot: a free one, else the oldest waiting connection's, else
		// wait for one (the connections behind this one stay queued in
		// the kernel meanwhile).
		select {
		case l.slots <- struct{}{}:
		default:
			l.evictOldest()
			select {
			case l.slots <- struct{}{}:
			case <-l.closed:
				c.Close()
				return nil, net.ErrClosed
			}
		}
		lc := &limitedConn{Conn: c, l: l, host: host}
		l.setWaiting(lc, true) // no request yet
		return lc, nil
	}
}

// evictOldest closes the connection that has waited longest without a
// request under way, if there is one.
func (l *limited) evictOldest() {
	l.mu.Lock()
	e := l.waiting.Front()
	l.mu.Unlock()
	if e != nil {
		e.Value.(*limitedConn).Close()
	}
}

// setWaiting moves c in or out of the connections that may be evicted.
func (l *limited) setWaiting(c *limitedConn, waiting bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.elem != nil {
		l.waiting.Remove(c.elem)
		c.elem = nil
	}
	if waiting && !c.gone {
		c.elem = l.waiting.PushBack(c)
	}
}

// connState follows net/http's view of a connection: new and idle ones
// may be evicted, active ones may not.
func (l *limited) connState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	switch st {
	case http.StateNew, http.StateIdle:
		l.setWaiting(lc, true)
	default:
		l.setWaiting(lc, false)
	}
}

func (l *limited) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *limited) release(c *limitedConn) {
	l.mu.Lock()
	c.gone = true
	if c.elem != nil {
		l.waiting.Remove(c.elem)
		c.elem = nil
	}
	if l.byClient[c.host]--; l.byClient[c.host] <= 0 {
		delete(l.byClient, c.host)
	}
	l.mu.Unlock()
	<-l.slots
}

type limitedConn struct {
	net.Conn
	l    *limited
	host string
	once sync.Once
	elem *list.Element // in l.waiting; guarded by l.mu
	gone bool          // released; guarded by l.mu
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}

func clientOf(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// refuse answers a connection over its client's bound with 429 and the
// error object, without reading its request, and closes it; a client that
// does not take the answer within a second just loses the connection.
func refuse(c net.Conn, limit int) {
	defer c.Close()
	body := fmt.Sprintf(`{"error":{"message":"too many connections from this client (the server's --max-connections-per-client is %d)","type":"TooManyRequests","param":null,"code":429}}`+"\n", limit)
	c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	// Closing with the request unread would reset the connection, and the
	// client might lose the answer: half-close, then drain what it sends.
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
		io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	}
}

// constantTimeEqual compares a credential without leaking its length of
// match through timing.
func constantTimeEqual(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
