package tabsession

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/durablews/durablews/internal/amqpconn"
)

// ErrBadKeySegment is what BindingKey and BindingPattern return (wrapped,
// with the segment and the reason) for a segment that is not one literal
// word of a topic key.
var ErrBadKeySegment = errors.New("tabsession: bad binding key segment")

// Wildcard is a topic-exchange wildcard word that BindingPattern appends
// after the literal segments: AnyWord or AnyWords. No other Wildcard can be
// made (its field is unexported), so data from a user can never become a
// wildcard.
type Wildcard struct{ word string }

var (
	// AnyWord is "*": exactly one word.
	AnyWord = Wildcard{"*"}
	// AnyWords is "#": zero or more words.
	AnyWords = Wildcard{"#"}
)

// String is the wildcard's word, "*" or "#".
func (w Wildcard) String() string { return w.word }

// BindingKey joins literal segments with "." into a topic key: an exact
// binding key, or a routing key to publish with. Each segment is one word
// and is taken literally: it must be non-empty, valid UTF-8, and contain
// none of '.', '*' and '#', and the key is at most 255 bytes. A segment
// that breaks the rule is refused (ErrBadKeySegment), never escaped or cut.
//
// Build every key that carries data from outside the code this way: with
// "customer." + id + ".#", an id of "43.order" or "*" or "#" widens the
// binding to another customer's events (or everyone's), because the
// exchange reads those characters as separators and wildcards. Wildcards
// are appended explicitly with BindingPattern.
func BindingKey(segments ...string) (string, error) {
	if len(segments) == 0 {
		return "", fmt.Errorf("%w: no segments: give at least one word", ErrBadKeySegment)
	}
	for i, s := range segments {
		switch {
		case s == "":
			return "", fmt.Errorf("%w: segment %d is empty: an empty id makes a key that names nobody; refuse it before building the key", ErrBadKeySegment, i)
		case !utf8.ValidString(s):
			return "", fmt.Errorf("%w: segment %d %q is not valid UTF-8", ErrBadKeySegment, i, s)
		case strings.ContainsAny(s, ".*#"):
			return "", fmt.Errorf("%w: segment %d %q contains '.', '*' or '#', which a topic exchange reads as a separator or wildcard: refuse such ids, or encode them (e.g. hex) before putting them in a key", ErrBadKeySegment, i, s)
		}
	}
	key := strings.Join(segments, ".")
	if len(key) > amqpconn.MaxShortString {
		return "", fmt.Errorf("%w: the key is %d bytes; a routing or binding key is at most %d", ErrBadKeySegment, len(key), amqpconn.MaxShortString)
	}
	return key, nil
}

// BindingPattern is BindingKey(segments...) followed by the wildcard w:
// BindingPattern(AnyWords, "customer", id) is "customer.<id>.#", which
// matches every routing key under customer.<id> (and customer.<id> itself)
// and nothing of another customer, whatever id holds (ids that are not a
// single literal word are refused).
func BindingPattern(w Wildcard, segments ...string) (string, error) {
	if w.word == "" {
		return "", fmt.Errorf("%w: zero Wildcard: use tabsession.AnyWord or tabsession.AnyWords", ErrBadKeySegment)
	}
	key, err := BindingKey(segments...)
	if err != nil {
		return "", err
	}
	if len(key)+2 > amqpconn.MaxShortString {
		return "", fmt.Errorf("%w: the key is %d bytes with the wildcard; a binding key is at most %d", ErrBadKeySegment, len(key)+2, amqpconn.MaxShortString)
	}
	return key + "." + w.word, nil
}
