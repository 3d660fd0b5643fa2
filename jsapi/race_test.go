//go:build race

package jsapi

const raceEnabled = true
