package pipes

// Crash stops the engine the way a killed process does: heartbeats and the
// pub/sub connection stop, nothing is cleaned up in Redis.
func (e *RedisEngine) Crash() {
	e.closed.Store(true)
	e.shutdownLoops()
	e.client.Close()
}
