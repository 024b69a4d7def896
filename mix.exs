defmodule Mix.Tasks.Compile.WsPortC do
  @shortdoc "Builds the port program priv/ws_port with make"
  @moduledoc """
  Mix compiler that runs `make priv/ws_port` at the root of ws_port (also
  when ws_port is a dependency), then makes sure `priv/` is linked into the
  build directory. Fails the compile when make fails.
  """
  use Mix.Task.Compiler

  @impl Mix.Task.Compiler
  def run(_args) do
    root = Path.dirname(__ENV__.file)

    # -s: silent when up to date; the Makefile still prints "CC file" lines
    case System.cmd(make(), ["-s", "priv/ws_port"], cd: root, into: IO.stream(:stdio, :line)) do
      {_, 0} ->
        link_priv()

      {_, status} ->
        message = "make priv/ws_port failed with exit status #{status}"
        Mix.shell().error(message)

        {:error,
         [
           %Mix.Task.Compiler.Diagnostic{
             compiler_name: "ws_port_c",
             file: Path.join(root, "Makefile"),
             message: message,
             position: nil,
             severity: :error
           }
         ]}
    end
  end

  # The Makefile is GNU make's: gmake on the BSDs, where make is BSD make.
  defp make do
    case :os.type() do
      {:unix, os} when os in [:freebsd, :openbsd, :netbsd, :dragonfly] -> "gmake"
      _ -> "make"
    end
  end

  # Mix links priv/ into _build before the compilers run; in a fresh
  # checkout priv/ only exists after make, so link it again.
  defp link_priv do
    Mix.Project.build_structure()
    {:ok, []}
  end
end

defmodule Mix.Tasks.Compile.WsPortChunks do
  @shortdoc "Builds the Erlang modules' doc chunks (edoc)"
  @moduledoc """
  Mix compiler that writes the EEP-48 doc chunks of the Erlang modules in
  `src/` (edoc's chunk doclet) to the application's `doc/chunks/` in the
  build directory, where `code:get_doc/1` finds them: `h :ws_port.connect`
  in IEx, `h(ws_port, connect)` in the Erlang shell. rebar3 does the same
  with scripts/doc_chunks.escript (a compile hook). Runs when a source is
  newer than its chunk.
  """
  use Mix.Task.Compiler

  @impl Mix.Task.Compiler
  def run(_args) do
    root = Path.dirname(__ENV__.file)
    src = Path.join(root, "src")
    out = Path.join(Mix.Project.app_path(), "doc")
    files = Path.wildcard(Path.join(src, "*.erl")) |> Enum.sort()

    stale =
      Enum.filter(files, fn f ->
        Mix.Utils.stale?([f], [Path.join([out, "chunks", Path.basename(f, ".erl") <> ".chunk"])])
      end)

    if stale == [] do
      {:noop, []}
    else
      opts = [
        doclet: :edoc_doclet_chunks,
        layout: :edoc_layout_chunks,
        preprocess: true,
        includes: [String.to_charlist(src)],
        dir: String.to_charlist(out)
      ]

      :ok = :edoc.files(Enum.map(files, &String.to_charlist/1), opts)
      {:ok, []}
    end
  end
end

defmodule WsPort.MixProject do
  use Mix.Project

  @version "0.1.0"
  # The project has no public repository address yet: no link is made up.
  # Before publishing, set it here (source_url, package links) and in
  # src/ws_port.app.src's links; test/package_test.exs checks they agree.
  @links %{}

  # What a Hex package holds (mix hex.build; rebar3_hex reads the same list
  # from src/ws_port.app.src). No priv/: the port program is built by the
  # user's compile (make), for their OS. test/package_test.exs checks it.
  @package_files ~w(c_src src lib scripts Makefile mix.exs rebar.config rebar.lock
                    .formatter.exs README.md LICENSE CHANGELOG.md docs/protocol.md)

  def project do
    [
      app: :ws_port,
      version: @version,
      description:
        "WebSocket client for Erlang and Elixir whose connections, TLS, framing, " <>
          "reconnection and keepalive run in a C port program",
      source_url: @links["Source"],
      package: package(),
      docs: docs(),
      elixir: "~> 1.14",
      compilers: [:ws_port_c] ++ Mix.compilers() ++ [:ws_port_chunks],
      erlc_paths: ["src"],
      erlc_include_path: "src",
      erlc_options: [:debug_info, :warnings_as_errors],
      start_permanent: Mix.env() == :prod,
      deps: deps()
    ]
  end

  def application do
    [
      mod: {:ws_port_app, []},
      env: [drivers: 2],
      registered: [:ws_port_sup],
      extra_applications: [:logger]
    ]
  end

  defp package do
    [
      licenses: ["Apache-2.0"],
      links: @links,
      files: @package_files,
      build_tools: ["mix", "rebar3"]
    ]
  end

  # ExDoc (where it is installed: not a dependency here, see deps/0)
  defp docs do
    [
      main: "readme",
      source_ref: "v#{@version}",
      extras: ["README.md", "CHANGELOG.md", "docs/protocol.md"],
      groups_for_extras: [Guides: ["README.md", "docs/protocol.md"], Changes: ["CHANGELOG.md"]],
      groups_for_modules: [
        Phoenix: [~r/^WsPort\.Phoenix/],
        "Elixir API": [~r/^WsPort(\.|$)/],
        "Erlang API": [:ws_port, :ws_port_sync, :ws_port_client, :ws_port_client_sup],
        "Erlang internals": [~r/^ws_port_/]
      ]
    ]
  end

  # No hex dependency in the core. Broadway and telemetry are optional: they
  # are declared only where Hex is installed (a user's project), because a
  # mix.exs naming a hex dep cannot even load without Hex (README, Install).
  defp deps do
    if Code.ensure_loaded?(Hex) do
      [
        {:broadway, "~> 1.0", optional: true},
        {:telemetry, "~> 1.0", optional: true}
      ]
    else
      []
    end
  end
end
