package raftstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The forwarding RPC: length-prefixed JSON frames over a fedgate-rpc/1 TLS
// connection. One request in flight per connection; the client pools idle
// connections per address.

const (
	maxFrame      = 4 << 20
	rpcIdleMax    = 4
	rpcDefaultTTL = 30 * time.Second

	opApply   = "apply"
	opJoin    = "join"
	opRemove  = "remove"
	opBarrier = "barrier"
	opStatus  = "status"
	opMembers = "members"
)

type rpcRequest struct {
	Op      string   `json:"op"`
	Command *Command `json:"command,omitempty"`
	NodeID  string   `json:"node_id,omitempty"`
	Addr    string   `json:"addr,omitempty"`
	// TimeoutMS is what is left of the caller's deadline.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

type rpcError struct {
	Code    string `json:"code"`
	Type    string `json:"type,omitempty"`
	Message string `json:"message"`
}

type rpcResponse struct {
	Result  *Result         `json:"result,omitempty"`
	Status  *Status         `json:"status,omitempty"`
	Members []ClusterMember `json:"members,omitempty"`
	Index   uint64          `json:"index,omitempty"`
	Err     *rpcError       `json:"error,omitempty"`
}

// Error codes on the wire; each maps back to a sentinel.
const (
	codeNotLeader = "not_leader"
	codeNoLeader  = "no_leader"
	codeRefused   = "refused"
	codeNotFound  = "not_found"
	codeClosed    = "closed"
	codeInternal  = "internal"
)

func toRPCError(err error) *rpcError {
	if err == nil {
		return nil
	}
	var re *RefusedError
	if errors.As(err, &re) {
		code := codeRefused
		if re.NotFound {
			code = codeNotFound
		}
		return &rpcError{Code: code, Type: re.Type, Message: re.Reason}
	}
	switch {
	case errors.Is(err, ErrNotLeader):
		return &rpcError{Code: codeNotLeader, Message: err.Error()}
	case errors.Is(err, ErrNoLeader):
		return &rpcError{Code: codeNoLeader, Message: err.Error()}
	case errors.Is(err, ErrNotFound):
		return &rpcError{Code: codeNotFound, Message: err.Error()}
	case errors.Is(err, ErrClosed):
		return &rpcError{Code: codeClosed, Message: err.Error()}
	}
	return &rpcError{Code: codeInternal, Message: err.Error()}
}

func (e *rpcError) toError() error {
	switch e.Code {
	case codeRefused:
		return &RefusedError{Type: e.Type, Reason: e.Message}
	case codeNotFound:
		if e.Type != "" {
			return &RefusedError{Type: e.Type, Reason: e.Message, NotFound: true}
		}
		return fmt.Errorf("%w: %s", ErrNotFound, e.Message)
	case codeNotLeader:
		return fmt.Errorf("%w (remote: %s)", ErrNotLeader, e.Message)
	case codeNoLeader:
		return fmt.Errorf("%w (remote: %s)", ErrNoLeader, e.Message)
	case codeClosed:
		return fmt.Errorf("%w (remote: %s)", errRemoteClosed, e.Message)
	}
	return fmt.Errorf("leader: %s", e.Message)
}

// errTransport: the RPC to the leader failed in transit (dial, read,
// write); the request may or may not have been handled, so only idempotent
// requests are retried on it.
var errTransport = errors.New("raftstore: rpc transport")

// errRemoteClosed: the leader we forwarded to is shutting down; retry.
var errRemoteClosed = errors.New("raftstore: remote node closed")

func writeFrame(w *bufio.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return fmt.Errorf("rpc frame of %d bytes exceeds %d", len(b), maxFrame)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	return w.Flush()
}

func readFrame(r *bufio.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return fmt.Errorf("rpc frame of %d bytes exceeds %d", n, maxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// serveRPC answers requests on one connection until it fails or closes.
func (s *Store) serveRPC(c net.Conn) {
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		var req rpcRequest
		if err := readFrame(r, &req); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("rpc connection ended", "remote", c.RemoteAddr().String(), "error", err)
			}
			return
		}
		c.SetReadDeadline(time.Time{})
		ttl := rpcDefaultTTL
		if req.TimeoutMS > 0 && time.Duration(req.TimeoutMS)*time.Millisecond < ttl {
			ttl = time.Duration(req.TimeoutMS) * time.Millisecond
		}
		ctx, cancel := context.WithTimeout(context.Background(), ttl)
		resp := s.handleRPC(ctx, req)
		cancel()
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := writeFrame(w, resp); err != nil {
			return
		}
	}
}

func (s *Store) handleRPC(ctx context.Context, req rpcRequest) rpcResponse {
	switch req.Op {
	case opApply:
		if req.Command == nil {
			return rpcResponse{Err: &rpcError{Code: codeRefused, Message: "apply without command"}}
		}
		res, err := s.applyLeader(ctx, *req.Command)
		if err != nil {
			return rpcResponse{Err: toRPCError(err)}
		}
		return rpcResponse{Result: &res}
	case opJoin:
		return rpcResponse{Err: toRPCError(s.joinLeader(ctx, req.NodeID, req.Addr))}
	case opRemove:
		return rpcResponse{Err: toRPCError(s.removeLeader(ctx, req.NodeID))}
	case opBarrier:
		idx, err := s.barrierLeader(ctx)
		return rpcResponse{Index: idx, Err: toRPCError(err)}
	case opStatus:
		st := s.Status()
		return rpcResponse{Status: &st}
	case opMembers:
		ms, err := s.membersLeader(ctx)
		return rpcResponse{Members: ms, Err: toRPCError(err)}
	}
	return rpcResponse{Err: &rpcError{Code: codeRefused, Message: fmt.Sprintf("unknown rpc op %q", req.Op)}}
}

// rpcClient keeps idle connections per address.
type rpcClient struct {
	m    *mux
	mu   sync.Mutex
	idle map[string][]*rpcConn
	shut bool
}

type rpcConn struct {
	c *tls.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func newRPCClient(m *mux) *rpcClient { return &rpcClient{m: m, idle: map[string][]*rpcConn{}} }

func (c *rpcClient) get(ctx context.Context, addr string) (*rpcConn, error) {
	c.mu.Lock()
	if c.shut {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if l := c.idle[addr]; len(l) > 0 {
		rc := l[len(l)-1]
		c.idle[addr] = l[:len(l)-1]
		c.mu.Unlock()
		return rc, nil
	}
	c.mu.Unlock()
	tc, err := c.m.dial(ctx, addr, ProtoRPC)
	if err != nil {
		return nil, err
	}
	return &rpcConn{c: tc, r: bufio.NewReader(tc), w: bufio.NewWriter(tc)}, nil
}

func (c *rpcClient) put(addr string, rc *rpcConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shut || len(c.idle[addr]) >= rpcIdleMax {
		rc.c.Close()
		return
	}
	c.idle[addr] = append(c.idle[addr], rc)
}

// call sends req to addr and waits for the answer. A transport failure is
// returned as is (retryable); a remote error is decoded to its sentinel.
func (c *rpcClient) call(ctx context.Context, addr string, req rpcRequest) (rpcResponse, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(rpcDefaultTTL)
	}
	req.TimeoutMS = time.Until(dl).Milliseconds()
	if req.TimeoutMS <= 0 {
		return rpcResponse{}, context.DeadlineExceeded
	}
	// A pooled connection may have been closed by the far side; retry
	// once on a fresh one.
	for attempt := 0; attempt < 2; attempt++ {
		rc, err := c.get(ctx, addr)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return rpcResponse{}, err
			}
			return rpcResponse{}, fmt.Errorf("%w: %v", errTransport, err)
		}
		rc.c.SetDeadline(dl.Add(time.Second))
		var resp rpcResponse
		if err = writeFrame(rc.w, req); err == nil {
			err = readFrame(rc.r, &resp)
		}
		if err != nil {
			rc.c.Close()
			if attempt == 0 && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
				continue
			}
			return rpcResponse{}, fmt.Errorf("%w: rpc %s to %s: %v", errTransport, req.Op, addr, err)
		}
		rc.c.SetDeadline(time.Time{})
		c.put(addr, rc)
		if resp.Err != nil {
			return resp, resp.Err.toError()
		}
		return resp, nil
	}
	return rpcResponse{}, fmt.Errorf("%w: rpc %s to %s failed", errTransport, req.Op, addr)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *rpcClient) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shut = true
	for _, l := range c.idle {
		for _, rc := range l {
			rc.c.Close()
		}
	}
	c.idle = nil
}
