#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noinput
%%
%% recv_bench: one ws_port connection, every message received by one Erlang
%% process (this one), counted.
%%
%%   escript bench/recv_bench.escript URL
%%
%% URL is a firehose stream, e.g. ws://127.0.0.1:P/?n=2000000&size=100.
%% RECV_OPTS (environment), an Erlang term, adds connect options.
%% Prints one line in the same format as plain_client, plus the CPU time of
%% the port program (from /proc/<os_pid>/stat of every port whose program's
%% name starts with ws_port, summed)
%% and of the whole BEAM OS process:
%%
%%   msgs=N bytes=B secs=S msgs_per_s=R mb_per_s=M cpu_port=P cpu_beam=E close=C
%%
%% secs runs from {ws_port_up, ...} to {ws_port_closed, ...}. The ws_port
%% code is found in $WS_PORT_EBIN, or in _build/*/lib/ws_port/ebin of the
%% repository (rebar3 or mix build); $WS_PORT_PROGRAM, if set, is the port
%% program to run instead of priv/ws_port.

-mode(compile).

main([Url]) ->
    add_code_path(),
    ok = application:load(ws_port),
    case os:getenv("WS_PORT_PROGRAM") of
        false -> ok;
        Prog -> application:set_env(ws_port, port_program, Prog)
    end,
    {ok, _} = application:ensure_all_started(ws_port),
    Opts0 = #{tls => #{verify => verify_none}, await => false, retry => false},
    %% RECV_OPTS: an Erlang term of extra connect options ("#{compress => true}")
    Opts = case os:getenv("RECV_OPTS") of
               V when V =:= false; V =:= "" -> Opts0;
               Text ->
                   {ok, Toks, _} = erl_scan:string(Text ++ "."),
                   {ok, Extra} = erl_parse:parse_term(Toks),
                   maps:merge(Opts0, Extra)
           end,
    {ok, Conn} = ws_port:connect(list_to_binary(Url), Opts),
    receive
        {ws_port_up, Conn, _Info} -> ok;
        {ws_port_closed, Conn, R0} -> fail("closed before up: ~p", [R0]);
        {ws_port_down, Conn, R0, _} -> fail("down before up: ~p", [R0])
    after 10000 -> fail("no ws_port_up in 10 s", [])
    end,
    Ports = ws_port_pids(),
    Cpu0 = [cpu(P) || P <- Ports],
    Beam0 = cpu(os:getpid()),
    T0 = erlang:monotonic_time(),
    {Msgs, Bytes, Reason} = loop(Conn, 0, 0),
    T1 = erlang:monotonic_time(),
    Cpu1 = [cpu(P) || P <- Ports],
    Beam1 = cpu(os:getpid()),
    Secs = erlang:convert_time_unit(T1 - T0, native, microsecond) / 1.0e6,
    CpuPort = float(lists:sum(Cpu1) - lists:sum(Cpu0)),
    Code = case Reason of
               {remote, C, _} -> C;
               _ -> -1
           end,
    io:format("msgs=~b bytes=~b secs=~.4f msgs_per_s=~b mb_per_s=~.1f "
              "cpu_port=~.3f cpu_beam=~.3f close=~b~n",
              [Msgs, Bytes, Secs, round(Msgs / Secs), Bytes / Secs / 1.0e6,
               CpuPort, float(Beam1 - Beam0), Code]),
    case Code of
        1000 -> halt(0);
        _ -> io:format(standard_error, "recv_bench: closed: ~p~n", [Reason]),
             halt(1)
    end;
main(_) ->
    io:format(standard_error, "usage: recv_bench.escript URL~n", []),
    halt(2).

loop(Conn, N, B) ->
    receive
        {ws_port, Conn, {binary, D}} -> loop(Conn, N + 1, B + byte_size(D));
        {ws_port, Conn, {text, D}} -> loop(Conn, N + 1, B + byte_size(D));
        {ws_port_closed, Conn, Reason} -> {N, B, Reason};
        {ws_port_down, Conn, Reason, _} -> {N, B, {down, Reason}}
    after 30000 -> {N, B, timeout}
    end.

fail(Fmt, Args) ->
    io:format(standard_error, "recv_bench: " ++ Fmt ++ "~n", Args),
    halt(1).

add_code_path() ->
    Root = filename:dirname(filename:dirname(filename:absname(escript:script_name()))),
    Cands = case os:getenv("WS_PORT_EBIN") of
                false -> [];
                E -> [E]
            end ++ filelib:wildcard(filename:join([Root, "_build", "*", "lib", "ws_port", "ebin"])),
    case [D || D <- Cands, filelib:is_file(filename:join(D, "ws_port.beam"))] of
        [Ebin | _] ->
            code:add_patha(Ebin),
            %% other applications of the same build (none needed by the core)
            Lib = filename:dirname(filename:dirname(Ebin)),
            [code:add_pathz(P) || P <- filelib:wildcard(filename:join([Lib, "*", "ebin"])),
                                  P =/= Ebin],
            ok;
        [] ->
            fail("no ws_port.beam found (set WS_PORT_EBIN or build with rebar3/mix)", [])
    end.

%% OS pids of the ws_port port programs running in this node.
ws_port_pids() ->
    [Pid || P <- erlang:ports(),
            {name, Name} <- [erlang:port_info(P, name)],
            lists:prefix("ws_port", filename:basename(hd(string:split(Name, " ")))),
            {os_pid, Pid} <- [erlang:port_info(P, os_pid)],
            is_integer(Pid)].

%% utime + stime of an OS process, in seconds.
cpu(Pid) when is_integer(Pid) -> cpu(integer_to_list(Pid));
cpu(Pid) ->
    case file:read_file("/proc/" ++ Pid ++ "/stat") of
        {ok, Stat} ->
            %% the command may contain spaces: fields start after the last ')'
            [_, Rest] = string:split(Stat, ")", trailing),
            Fields = string:lexemes(Rest, " "),
            %% Rest starts at field 3 (state); utime is field 14, stime 15
            UT = binary_to_integer(lists:nth(12, Fields)),
            ST = binary_to_integer(lists:nth(13, Fields)),
            (UT + ST) / clk_tck();
        _ -> 0.0
    end.

clk_tck() ->
    case get(clk_tck) of
        undefined ->
            T = case string:trim(os:cmd("getconf CLK_TCK")) of
                    "" -> 100;
                    S -> list_to_integer(S)
                end,
            put(clk_tck, T),
            T;
        T -> T
    end.
