// Package cli holds what every yactl command shares: the usage error that makes the tool exit
// with status 2, whichever command found the command line wrong.
package cli

import "errors"

// ErrUsage is matched (errors.Is) by every command's usage error.
var ErrUsage = errors.New("usage")

// Usage is the error a command returns for a command line it does not understand; synopsis is
// the command's usage line, printed after "usage: ".
func Usage(synopsis string) error { return usageError(synopsis) }

type usageError string

func (e usageError) Error() string        { return "usage: " + string(e) }
func (e usageError) Is(target error) bool { return target == ErrUsage }
