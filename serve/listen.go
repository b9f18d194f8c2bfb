package serve

import (
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// limitListener bounds the connections a listener hands out: at most
// total at once (Accept waits for one to close, leaving the rest in the
// kernel's queue, where they hold no descriptor of ours), and at most
// perClient from one address (the one over is answered 429 and closed,
// so a single client cannot take every slot).
func limitListener(ln net.Listener, total, perClient int) net.Listener {
	return &limited{Listener: ln, slots: make(chan struct{}, total), perClient: perClient,
		byClient: map[string]int{}, closed: make(chan struct{})}
}

type limited struct {
	net.Listener
	slots     chan struct{}
	perClient int
	mu        sync.Mutex
	byClient  map[string]int
	closeOnce sync.Once
	closed    chan struct{}
}

func (l *limited) Accept() (net.Conn, error) {
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
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
			<-l.slots
			go refuse(c, l.perClient)
			continue
		}
		return &limitedConn{Conn: c, l: l, host: host}, nil
	}
}

func (l *limited) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *limited) release(host string) {
	l.mu.Lock()
	if l.byClient[host]--; l.byClient[host] <= 0 {
		delete(l.byClient, host)
	}
	l.mu.Unlock()
	<-l.slots
}

type limitedConn struct {
	net.Conn
	l    *limited
	host string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.host) })
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
