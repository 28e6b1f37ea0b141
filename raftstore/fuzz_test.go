package raftstore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzDecodeCommand: log entries are decoded strictly; garbage is a
// refusal, never a panic.
func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"x","type":"kv.put","at":"2026-01-01T00:00:00Z","payload":{"key":"k","value":"AA=="}}`))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeCommand(data)
		if err != nil {
			return
		}
		s := NewState(8)
		if next, _, err := s.Apply(1, c); err != nil && next != s {
			t.Fatal("refusal returned a new state")
		}
	})
}

// FuzzReadFrame: RPC frames from the network (authenticated nodes only,
// but still outside input) never panic and respect the size cap.
func FuzzReadFrame(f *testing.F) {
	frame := func(b []byte) []byte {
		var h [4]byte
		binary.BigEndian.PutUint32(h[:], uint32(len(b)))
		return append(h[:], b...)
	}
	f.Add(frame([]byte(`{"op":"apply","command":{"v":1,"id":"a","type":"kv.put","at":"2026-01-01T00:00:00Z"}}`)))
	f.Add(frame([]byte(`{"op":"status"}`)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req rpcRequest
		_ = readFrame(bufio.NewReader(bytes.NewReader(data)), &req)
	})
}
