# :chaos (test/chaos_test.exs) runs on its own: make chaos (part of make test-all)
ExUnit.start(exclude: [:chaos])
