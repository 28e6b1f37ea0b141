package federation

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Token format constants.
const (
	// TokenPrefix starts every grant token.
	TokenPrefix = "fgs."
	// TokenMACPrefix is prepended to the grant id before the HMAC.
	TokenMACPrefix = "federation-grant:"
	// MinSecretLen is the shortest accepted grant-token secret in bytes; with
	// a shorter (or no) secret every mint and verify fails closed.
	MinSecretLen = 32
	// TokenLen is the length of a grant token string.
	TokenLen = len(TokenPrefix) + idLen + 1 + 2*sha256.Size
)

// MintToken returns the bearer token of grant grantID:
// "fgs.<grant_id>.<hex HMAC-SHA256(secret, "federation-grant:<grant_id>")>".
func MintToken(secret []byte, grantID string) (string, error) {
	if len(secret) < MinSecretLen {
		return "", ErrNoSecret
	}
	if err := ParseID(grantID); err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return formatToken(grantID, tokenMAC(secret, grantID)), nil
}

func formatToken(grantID string, mac [sha256.Size]byte) string {
	var b strings.Builder
	b.Grow(TokenLen)
	b.WriteString(TokenPrefix)
	b.WriteString(grantID)
	b.WriteByte('.')
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], mac[:])
	b.Write(h[:])
	return b.String()
}

func tokenMAC(secret []byte, grantID string) [sha256.Size]byte {
	m := hmac.New(sha256.New, secret)
	var buf [len(TokenMACPrefix) + idLen]byte
	n := copy(buf[:], TokenMACPrefix)
	n += copy(buf[n:], grantID)
	m.Write(buf[:n])
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// ParseToken splits a token into its grant id (a canonical UUIDv7) and its
// 32-byte MAC. It checks only the form, not the MAC.
func ParseToken(s string) (grantID string, mac [sha256.Size]byte, err error) {
	if len(s) != TokenLen || !strings.HasPrefix(s, TokenPrefix) || s[len(TokenPrefix)+idLen] != '.' {
		return "", mac, ErrTokenMalformed
	}
	grantID = s[len(TokenPrefix) : len(TokenPrefix)+idLen]
	if ParseID(grantID) != nil {
		return "", mac, ErrTokenMalformed
	}
	hx := s[len(TokenPrefix)+idLen+1:]
	for i := 0; i < len(hx); i++ {
		c := hx[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", [sha256.Size]byte{}, ErrTokenMalformed
		}
		mac[i/2] = mac[i/2]<<4 | unhex(c)
	}
	return grantID, mac, nil
}

// VerifyToken parses token and checks its MAC against secret in constant
// time. It fails closed with ErrNoSecret when secret is shorter than
// MinSecretLen, ErrTokenMalformed or ErrTokenMismatch otherwise.
func VerifyToken(secret []byte, token string) (grantID string, err error) {
	if len(secret) < MinSecretLen {
		return "", ErrNoSecret
	}
	id, mac, err := ParseToken(token)
	if err != nil {
		return "", err
	}
	want := tokenMAC(secret, id)
	if !hmac.Equal(mac[:], want[:]) {
		return "", ErrTokenMismatch
	}
	return id, nil
}
