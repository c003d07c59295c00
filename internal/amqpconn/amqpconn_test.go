package amqpconn

import (
	"reflect"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestWithConnectionName(t *testing.T) {
	mine := amqp.Config{Properties: amqp.Table{"product": "app"}}
	got := WithConnectionName(mine, "durablews-publisher")
	if got.Properties["connection_name"] != "durablews-publisher" || got.Properties["product"] != "app" {
		t.Fatalf("properties %v: want connection_name set and product kept", got.Properties)
	}
	if _, ok := mine.Properties["connection_name"]; ok {
		t.Fatal("the caller's Properties table was changed")
	}
	named := amqp.Config{Properties: amqp.Table{"connection_name": "orders"}}
	if WithConnectionName(named, "x").Properties["connection_name"] != "orders" {
		t.Fatal("a connection name the caller set was replaced")
	}
	if WithConnectionName(amqp.Config{}, "x").Properties["connection_name"] != "x" {
		t.Fatal("no name set on a config without properties")
	}
}

func TestValidateAndRedactURL(t *testing.T) {
	for raw, want := range map[string]string{
		"amqp://u:p@host:5672/": "",
		"amqps://host/vh":       "",
		"http://host/":          "scheme must be amqp or amqps",
		"amqp:///":              "no host",
		"amqp://u:p@[::1:5672/": "missing ']'",
	} {
		err := ValidateURL(raw)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("ValidateURL(%q) = %v, want %q", raw, err, want)
		}
	}
	if got := RedactURL("amqp://svc:secret@host:5672/"); strings.Contains(got, "secret") || !strings.Contains(got, "svc") {
		t.Errorf("RedactURL kept the password or lost the user: %s", got)
	}
	if got := RedactURL("amqp://u:secret@[::1:5672/"); got != "<unparsable URL>" {
		t.Errorf("RedactURL of an unparsable URL = %q", got)
	}
}

func TestCheckConfig(t *testing.T) {
	if err := CheckConfig(amqp.Config{}); err != nil {
		t.Fatalf("a config without Recovery: %v", err)
	}
	err := CheckConfig(amqp.Config{Recovery: &amqp.Recovery{}})
	if err == nil || !strings.Contains(err.Error(), "AMQP.Recovery is set") {
		t.Fatalf("a config with Recovery: %v; want it refused", err)
	}
}

func TestDialErrorIsRedacted(t *testing.T) {
	_, err := Dial("amqp://svc:secret@127.0.0.1:1/", amqp.Config{}, "test")
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Dial to a closed port: %v; want an error naming the host without the password", err)
	}
}

func TestUnlimitedDeliveries(t *testing.T) {
	for version, want := range map[string]amqp.Table{
		"3.10.8": nil,
		"3.13.7": nil,
		"4.0.5":  {"x-delivery-limit": int64(-1)},
		"4.3.6":  {"x-delivery-limit": int64(-1)},
		"10.1.0": {"x-delivery-limit": int64(-1)},
		"":       {"x-delivery-limit": int64(-1)},
	} {
		if got := UnlimitedDeliveries(version); !reflect.DeepEqual(got, want) {
			t.Errorf("UnlimitedDeliveries(%q) = %v, want %v", version, got, want)
		}
	}
}
