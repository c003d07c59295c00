package durablews

import "fmt"

// recoverUser, deferred by a function that calls a callback the user
// configured (named what, e.g. "Config.RoutingKey"), turns a panic in it
// into *err, so a bug there fails one call instead of taking the process
// down:
//
//	func f() (err error) {
//		defer recoverUser("Config.OnConnect", &err)
//		return cfg.OnConnect(ctx, conn)
//	}
func recoverUser(what string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s panicked: %v", what, r)
	}
}
