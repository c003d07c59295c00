package stomptab

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"strings"
)

func randomHex(nBytes int) string {
	b := make([]byte, nBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b)
}

var tabIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTabID returns a random tab id in the browser client's format
// (web/internal.js generateTabId): 16 random bytes as 26 lowercase
// base32 characters [a-z2-7], never containing the '-' separator.
func NewTabID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return strings.ToLower(tabIDEncoding.EncodeToString(b))
}

// QueueName is the per-tab queue name the browser uses: tab-<tabid>-<name>.
func QueueName(tabID, name string) string { return "tab-" + tabID + "-" + name }

// RandomQueueName is QueueName(NewTabID(), name).
func RandomQueueName(name string) string { return QueueName(NewTabID(), name) }

// UniqueName returns prefix + "-" + 12 random hex characters, for
// per-test exchange names on a shared broker.
func UniqueName(prefix string) string { return prefix + "-" + randomHex(6) }
