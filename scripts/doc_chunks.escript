#!/usr/bin/env escript
%% Usage: escript scripts/doc_chunks.escript OUT_DIR
%% Writes the EEP-48 doc chunks of every module in src/ (edoc's chunk
%% doclet) to OUT_DIR/chunks/<module>.chunk, where code:get_doc/1 looks for
%% them when OUT_DIR is the application's doc/ directory (next to ebin/):
%% `h(ws_port, connect)' in the Erlang shell, `h :ws_port.connect' in IEx.
%% Run by rebar3's compile hook (rebar.config); mix.exs does the same with
%% its ws_port_chunks compiler. Exits 1 if edoc fails.
main([OutDir]) ->
    Root = filename:dirname(filename:dirname(filename:absname(escript:script_name()))),
    Src = filename:join(Root, "src"),
    Files = lists:sort(filelib:wildcard(filename:join(Src, "*.erl"))),
    Opts = [
        {doclet, edoc_doclet_chunks},
        {layout, edoc_layout_chunks},
        {preprocess, true},
        {includes, [Src]},
        {dir, OutDir}
    ],
    Chunk = fun(F) -> filename:join([OutDir, "chunks", filename:basename(F, ".erl") ++ ".chunk"]) end,
    Fresh = lists:all(
        fun(F) -> filelib:last_modified(Chunk(F)) >= filelib:last_modified(F) end, Files
    ),
    Fresh orelse run(Files, Opts);
main(_) ->
    io:format(standard_error, "usage: doc_chunks.escript OUT_DIR~n", []),
    halt(2).

run(Files, Opts) ->
    try edoc:files(Files, Opts) of
        ok -> true
    catch
        C:R ->
            io:format(standard_error, "doc_chunks: edoc failed: ~p:~p~n", [C, R]),
            halt(1)
    end.
