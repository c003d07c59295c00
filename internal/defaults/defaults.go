// Package defaults fills zero-valued configuration fields: the one shape
// of every setDefaults in this module.
package defaults

// Set sets *field to value when *field is the zero value of its type.
func Set[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}
