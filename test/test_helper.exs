# WS_PORT_PROGRAM=path runs every driver of the application (the default
# pool included) on that build of the port program: `make portable-test`
# runs the end-to-end suites on the portable build this way, and
# WS_PORT_PROGRAM=priv/ws_port.asan on the sanitizer build.
case System.get_env("WS_PORT_PROGRAM") do
  p when p in [nil, ""] ->
    :ok

  p ->
    program = Path.expand(p)
    File.regular?(program) || raise "WS_PORT_PROGRAM=#{p}: no such file"
    :ok = Application.stop(:ws_port)
    :ok = Application.put_env(:ws_port, :port_program, program)
    {:ok, _} = Application.ensure_all_started(:ws_port)
    IO.puts("ws_port: every driver runs #{program}")
end

# :chaos (test/chaos_test.exs) runs on its own: make chaos (part of make test-all)
ExUnit.start(exclude: [:chaos])
