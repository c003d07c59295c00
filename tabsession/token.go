package tabsession

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MinSigningKeyBytes is the shortest Config.SigningKey accepted:
// HS256 keys shorter than the hash output (32 bytes) weaken the MAC.
const MinSigningKeyBytes = 32

// tabClaims are the claims of a tab token, as RabbitMQ 3.10.8's
// rabbitmq_auth_backend_oauth2 reads them:
//
//   - aud must be present and contain the resource server id, otherwise the
//     token is refused (validate_payload/check_aud);
//   - scope is a space-separated list; only scopes prefixed with
//     "<resource_server_id>." count, in the form <perm>:<vhost>/<name>
//     (the vhost part is URL-decoded, '*' is a wildcard);
//   - the user name is client_id, else sub (we set sub only);
//   - exp is checked at CONNECT and at every later permission check, but a
//     consumer that is already running is never re-checked.
type tabClaims struct {
	Scope string `json:"scope"`
	jwt.RegisteredClaims
}

// tabTokenIssuer is the iss claim (informational; RabbitMQ does not check it).
const tabTokenIssuer = "durablews"

// readScope is the main kind of scope a tab token carries: read on one queue
// (the tab's, or a granted stream) in one vhost, e.g.
// rabbitmq.read:%2F/tab-0123456789abcdef-k3x... It grants neither configure
// (declare, delete) nor write (bind, publish). The only write a token can
// carry is writeScope, for the tab's own receipts routing key.
//
// The plugin splits the resource part on '/' and URL-decodes each part,
// treating '*' as a wildcard, so the vhost is query-escaped ('/' -> %2F,
// '*' -> %2A) and names are restricted to [a-z0-9-] (queueName) or, for
// streams, [A-Za-z0-9_.-] (cleanStreams).
func readScope(resourceServerID, vhost, queue string) string {
	return resourceServerID + ".read:" + url.QueryEscape(vhost) + "/" + queue
}

// mintTabToken signs an HS256 JWT reading queue and reads (granted
// streams; a leader's other tab queues), with the
// write scopes writes (writeScope: the tab's receipts routing key only),
// valid from now for ttl. kid goes into the header when non-empty; without it the broker
// uses its default_key.
func mintTabToken(key []byte, kid, resourceServerID, vhost, queue string, reads, writes []string, now time.Time, ttl time.Duration) (string, time.Time, error) {
	exp := now.Add(ttl).Truncate(time.Second)
	scopes := []string{readScope(resourceServerID, vhost, queue)}
	for _, s := range reads { // read on each, nothing more
		scopes = append(scopes, readScope(resourceServerID, vhost, s))
	}
	scopes = append(scopes, writes...)
	claims := tabClaims{
		Scope: strings.Join(scopes, " "),
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    tabTokenIssuer,
			Subject:   queue, // the broker's user name for this connection
			Audience:  jwt.ClaimStrings{resourceServerID},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)), // not checked by 3.10.8; for other verifiers
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        randomHex(16),
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("tabsession: sign tab token: %w", err)
	}
	return s, exp, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (Go >= 1.24)
	return hex.EncodeToString(b)
}

// LoadSigningKey reads a tab-token signing key from a file holding the key
// as base64url text without padding (surrounding whitespace ignored), the
// format scripts/rabbitmq-tab-sessions.sh writes (default path
// /var/lib/durablews/dev-signing-key) and the broker's advanced.config
// embeds as the "k" of an oct JWK. The key must decode to at least
// MinSigningKeyBytes bytes.
func LoadSigningKey(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tabsession: read signing key: %w", err)
	}
	text := strings.TrimSpace(string(raw))
	if text == "" {
		return nil, fmt.Errorf("tabsession: signing key file %s is empty", path)
	}
	key, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(text, "="))
	if err != nil {
		return nil, fmt.Errorf("tabsession: signing key file %s is not base64url text: %w", path, err)
	}
	if len(key) < MinSigningKeyBytes {
		return nil, fmt.Errorf("tabsession: signing key in %s is %d bytes; need at least %d", path, len(key), MinSigningKeyBytes)
	}
	return key, nil
}
