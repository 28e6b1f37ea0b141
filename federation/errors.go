package federation

import "errors"

// Sentinel errors. Functions wrap them with context; test with errors.Is.
var (
	// ErrInvalid marks a record or message whose fields have the wrong shape.
	ErrInvalid = errors.New("invalid")
	// ErrInvalidID marks an id that is not a canonical UUIDv7.
	ErrInvalidID = errors.New("invalid id")
	// ErrTransition marks a status change the state machine does not allow.
	ErrTransition = errors.New("transition not allowed")
	// ErrDisclosureMissing marks a peer missing identity-disclosure fields
	// (commitment 1); such a peer cannot reach enrolled.
	ErrDisclosureMissing = errors.New("identity disclosure missing")
	// ErrNoSecret marks a grant-token operation attempted without a usable
	// secret; token checks fail closed.
	ErrNoSecret = errors.New("grant token secret missing or too short")
	// ErrTokenMalformed marks a string that is not an fgs.<id>.<hex> token.
	ErrTokenMalformed = errors.New("malformed grant token")
	// ErrTokenMismatch marks a well-formed token whose HMAC does not verify.
	ErrTokenMismatch = errors.New("grant token does not verify")
	// ErrContractVersion marks an invalid, unknown or deprecated contract version.
	ErrContractVersion = errors.New("contract version")
	// ErrDigestMismatch marks contract text whose SHA-256 differs from its digest.
	ErrDigestMismatch = errors.New("contract digest mismatch")
	// ErrVersionFormat marks a platform version that is not semantic versioning.
	ErrVersionFormat = errors.New("invalid semantic version")
	// ErrIncompatibleVersion marks platform versions more than one minor apart
	// or of different majors (commitment 10).
	ErrIncompatibleVersion = errors.New("incompatible platform versions")
	// ErrGrantRevoked marks an operation on an already revoked grant.
	ErrGrantRevoked = errors.New("grant already revoked")
)
