%% EUnit tests of the Erlang doc chunks (EEP 48) the build makes
%% (rebar3: scripts/doc_chunks.escript as a compile hook; mix: the
%% ws_port_chunks compiler): code:get_doc/1 finds them for every module of
%% the application, every function ws_port exports has its doc, and the
%% shell's h(ws_port, connect) renders it.
-module(ws_port_doc_tests).

-include_lib("eunit/include/eunit.hrl").

docs(Mod) ->
    {ok, {docs_v1, _Anno, erlang, <<"application/erlang+html">>, ModDoc, _Meta, Docs}} =
        code:get_doc(Mod),
    {ModDoc, Docs}.

%% (without a chunk, code:get_doc/1 makes one up from the debug info, with
%% no text: the file itself must be there)
every_module_has_a_chunk_test() ->
    _ = application:load(ws_port),
    {ok, Mods} = application:get_key(ws_port, modules),
    ErlMods = [M || M <- Mods, not lists:prefix("Elixir.", atom_to_list(M))],
    ?assert(length(ErlMods) >= 10),
    Dir = filename:join([code:lib_dir(ws_port), "doc", "chunks"]),
    Missing = [M || M <- ErlMods, not filelib:is_regular(filename:join(Dir, atom_to_list(M) ++ ".chunk"))],
    ?assertEqual([], Missing),
    [?assertMatch({M, {ok, {docs_v1, _, erlang, _, _, _, _}}}, {M, code:get_doc(M)}) || M <- ErlMods].

connect_has_docs_test() ->
    {#{<<"en">> := _}, Docs} = docs(ws_port),
    [Connect2] = [D || {{function, connect, 2}, _, _, D, _} <- Docs],
    #{<<"en">> := Text} = Connect2,
    ?assertNotEqual([], Text),
    Flat = iolist_to_binary(io_lib:format("~p", [Text])),
    ?assertNotEqual(nomatch, binary:match(Flat, <<"Opens a WebSocket connection">>)).

every_exported_function_of_ws_port_has_docs_test() ->
    {_, Docs} = docs(ws_port),
    Exported = [{F, A} || {F, A} <- ws_port:module_info(exports), F =/= module_info],
    Undocumented = [
        FA
     || FA = {F, A} <- Exported,
        not lists:any(
            fun
                ({{function, F1, A1}, _, _, #{<<"en">> := _}, _}) -> {F1, A1} =:= {F, A};
                (_) -> false
            end,
            Docs
        )
    ],
    ?assertEqual([], Undocumented).

%% What h(ws_port, connect) prints. shell_docs asks the group leader for
%% its encoding, which eunit's does not answer: render where `user' is.
shell_h_renders_connect_test() ->
    {ok, Docs} = code:get_doc(ws_port),
    Self = self(),
    spawn_link(fun() ->
        group_leader(whereis(user), self()),
        Self ! {rendered, shell_docs:render(ws_port, connect, Docs, #{columns => 80, ansi => false})}
    end),
    Rendered = receive {rendered, R} -> unicode:characters_to_binary(R) after 10000 -> <<"timeout">> end,
    ?assertNotEqual(nomatch, binary:match(Rendered, <<"Opens a WebSocket connection">>)),
    ?assertNotEqual(nomatch, binary:match(Rendered, <<"-spec connect(Url :: url(), Opts :: connect_opts())">>)).
