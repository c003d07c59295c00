package defaults

import (
	"testing"
	"time"
)

func TestSet(t *testing.T) {
	d, s, n := time.Duration(0), "set", 0
	Set(&d, time.Second)
	Set(&s, "default")
	Set(&n, 7)
	if d != time.Second || s != "set" || n != 7 {
		t.Fatalf("got %v %q %d; want zero fields set and the set one kept", d, s, n)
	}
	var e error
	Set[error](&e, errSentinel{})
	if e == nil {
		t.Fatal("a nil interface field was not set")
	}
}

type errSentinel struct{}

func (errSentinel) Error() string { return "x" }
