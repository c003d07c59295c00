package tabsession

import (
	"fmt"
	"runtime/debug"
)

// callbackPanic is a panic in one of the application's callbacks
// (Authenticate, Bindings, Streams), recovered by callGuarded. The request
// fails with 500; the panic value and the stack go to the log, never to the
// client.
type callbackPanic struct {
	callback string // "Authenticate", "Bindings", "Streams"
	value    any
	stack    []byte
}

func (p *callbackPanic) Error() string {
	return fmt.Sprintf("panic in the %s callback: %v\n%s", p.callback, p.value, p.stack)
}

// Unwrap returns the panic value when it is an error (panic(err)).
func (p *callbackPanic) Unwrap() error {
	err, _ := p.value.(error)
	return err
}

// callGuarded runs f, the application's callback named callback, and
// returns a *callbackPanic instead of letting a panic in it escape: an
// escaped panic would skip the bookkeeping of the request (Close would then
// wait for it for ever) and, in Prepare, crash the application's handler.
func callGuarded[T any](callback string, f func() (T, error)) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			var zero T
			v, err = zero, &callbackPanic{callback: callback, value: p, stack: debug.Stack()}
		}
	}()
	return f()
}
