// Package layers holds the import rules of the tree, as a test (layers_test.go) over
// `go list -deps`: the shape the style guide sets, checked rather than hoped for.
package layers
