package federation

import (
	"fmt"
	"io"
	"time"
)

// idLen is the length of a canonical UUID string.
const idLen = 36

// NewID returns a new UUIDv7 (RFC 9562) in canonical lower-case form, with
// its 48-bit timestamp taken from now (milliseconds since the Unix epoch) and
// its 74 random bits read from rand (crypto/rand.Reader in production, a
// fixed reader in tests).
func NewID(now time.Time, rand io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(rand, b[6:]); err != nil {
		return "", fmt.Errorf("new id: read random: %w", err)
	}
	ms := uint64(now.UnixMilli())
	b[0] = byte(ms >> 40)
	b[1] = byte(ms >> 32)
	b[2] = byte(ms >> 24)
	b[3] = byte(ms >> 16)
	b[4] = byte(ms >> 8)
	b[5] = byte(ms)
	b[6] = 0x70 | (b[6] & 0x0f) // version 7
	b[8] = 0x80 | (b[8] & 0x3f) // RFC 9562 variant
	return formatID(b), nil
}

func formatID(b [16]byte) string {
	const hexdigits = "0123456789abcdef"
	var s [idLen]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j] = hexdigits[c>>4]
		s[j+1] = hexdigits[c&0x0f]
		j += 2
	}
	return string(s[:])
}

// ParseID checks that s is a UUIDv7 in canonical form (36 characters,
// lower-case hex, hyphens at 8-4-4-4-12, version 7, RFC 9562 variant). It
// never normalises: an upper-case or braced spelling is refused, because ids
// are never rewritten.
func ParseID(s string) error {
	if err := parseUUID(s); err != nil {
		return err
	}
	if s[14] != '7' {
		return fmt.Errorf("%w: %q is not version 7", ErrInvalidID, s)
	}
	switch s[19] {
	case '8', '9', 'a', 'b':
	default:
		return fmt.Errorf("%w: %q has a non-RFC 9562 variant", ErrInvalidID, s)
	}
	return nil
}

// ParseUUID checks that s is a UUID of any version in canonical lower-case
// form. It is used for ids the platform owns whose version fedgate does not
// dictate (node instance ids, SDWAN network ids, remote instance ids).
func ParseUUID(s string) error { return parseUUID(s) }

func parseUUID(s string) error {
	if len(s) != idLen {
		return fmt.Errorf("%w: %q is not a canonical uuid (length %d)", ErrInvalidID, s, len(s))
	}
	for i := 0; i < idLen; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return fmt.Errorf("%w: %q is not a canonical uuid", ErrInvalidID, s)
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return fmt.Errorf("%w: %q is not a canonical lower-case uuid", ErrInvalidID, s)
			}
		}
	}
	return nil
}

// IDTime returns the timestamp embedded in a UUIDv7 (millisecond precision).
func IDTime(id string) (time.Time, error) {
	if err := ParseID(id); err != nil {
		return time.Time{}, err
	}
	var ms int64
	for i := 0; i < 13; i++ {
		if i == 8 {
			continue
		}
		ms = ms<<4 | int64(unhex(id[i]))
	}
	return time.UnixMilli(ms).UTC(), nil
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}
