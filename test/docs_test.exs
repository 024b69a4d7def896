defmodule WsPort.DocsTest do
  @moduledoc """
  The Erlang modules' doc chunks that the Mix build makes (the
  ws_port_chunks compiler in mix.exs; rebar3's compile hook makes the same,
  test/ws_port_doc_tests.erl): `h :ws_port.connect` in IEx shows the docs,
  and `code:get_doc/1` finds a chunk for every module of the application.
  """
  use ExUnit.Case, async: true

  import ExUnit.CaptureIO

  test "every Erlang module of the application has its chunk where code:get_doc/1 looks" do
    {:ok, mods} = :application.get_key(:ws_port, :modules)
    erl_mods = Enum.reject(mods, &String.starts_with?(Atom.to_string(&1), "Elixir."))
    assert length(erl_mods) >= 10
    dir = Path.join([:code.lib_dir(:ws_port), "doc", "chunks"])
    assert Enum.reject(erl_mods, &File.regular?(Path.join(dir, "#{&1}.chunk"))) == []
  end

  test "code:get_doc(ws_port) has the docs of connect/2" do
    {:ok, {:docs_v1, _, :erlang, "application/erlang+html", %{"en" => _}, _, docs}} =
      :code.get_doc(:ws_port)

    assert [%{"en" => text}] = for({{:function, :connect, 2}, _, _, d, _} <- docs, do: d)
    assert inspect(text, limit: :infinity) =~ "Opens a WebSocket connection"
  end

  test "h :ws_port.connect in IEx prints them" do
    out = capture_io(fn -> IEx.Introspection.h({:ws_port, :connect}) end)
    assert out =~ "Opens a WebSocket connection owned by the caller"
    assert out =~ "connect(Url,"
    refute out =~ "No documentation"
  end

  test "WsPort.connect/2's doc states the retry_on default the code has" do
    # it said [:network, :timeout, :http_5xx, :http_429, :protocol,
    # :remote_close]: every server close retried, 1000 included
    {:docs_v1, _, :elixir, _, _, _, docs} = Code.fetch_docs(WsPort)
    [doc] = for {{:function, :connect, 2}, _, _, %{"en" => d}, _} <- docs, do: d
    text = String.replace(doc, ~r/\s+/, " ")

    default =
      :default
      |> :ws_port_retry.retry_on()
      |> inspect(limit: :infinity)
      |> String.replace(~r/\s+/, " ")

    assert text =~ "`:retry_on` - "
    assert String.contains?(text, "(default `:default`, which is `#{default}`")
    refute text =~ ":protocol, :remote_close]"
  end

  test "WsPort's option types have what connect/2 takes: funs for :proxy and the :tls key" do
    # connect/2 takes them (they are how the options are kept concealed)
    # but the types said no: dialyzer flagged such calls
    {:ok, types} = Code.Typespec.fetch_types(WsPort)

    text = fn name ->
      [t] = for {:type, {^name, _, _} = t} <- types, do: t
      t |> Code.Typespec.type_to_quoted() |> Macro.to_string()
    end

    assert text.(:proxy) =~ "(() -> proxy())"
    assert text.(:proxy) =~ ":none"
    assert text.(:tls_option) =~ ~r/\{:key,.*\(\(\) -> binary\(\)/s
    # and connect/2 does take them
    for proxy <- [fn -> :none end, :none, false] do
      assert {:ok, %{proxy: :none}} = :ws_port_proto.normalize_connect_opts(proxy: proxy)
    end
  end
end
