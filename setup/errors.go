package setup

import (
	"errors"
	"fmt"
)

// Error is bad input: a flag, a setting or a file that cannot be used,
// with what would be valid. Commands exit 2 on it.
type Error struct{ Err error }

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf is bad input described as fmt.Errorf describes errors.
func Errorf(format string, args ...any) error { return &Error{fmt.Errorf(format, args...)} }

// Bad marks err as bad input (nil stays nil).
func Bad(err error) error {
	if err == nil {
		return nil
	}
	return &Error{err}
}

// IsBad reports whether err is, or wraps, bad input.
func IsBad(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
