#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noinput
%%
%% beam_raw_bench: what the BEAM itself reads from the same firehose stream,
%% as a reference for ws_port: gen_tcp (ws) or OTP's ssl (wss) in binary
%% mode with {active, N}, one process, the bytes counted and dropped. No
%% WebSocket parsing at all (the upgrade request is written by hand and the
%% frames are only counted by their known total length), so this is a
%% ceiling for any client written in Erlang on this machine, not a client.
%%
%%   escript bench/beam_raw_bench.escript URL
%%
%% URL is a firehose stream with n and size, e.g.
%% ws://127.0.0.1:P/?n=20000&size=65536. Prints the line of recv_bench
%% (payload bytes; secs from the 101 response to the last frame byte):
%%
%%   msgs=N bytes=B secs=S msgs_per_s=R mb_per_s=M cpu_beam=E close=C
%%
%% close is 1000 when the bytes after the last frame start a close frame.

-mode(compile).

main([Url]) ->
    #{scheme := Scheme, host := Host, port := Port} = U = uri_string:parse(Url),
    Query = maps:from_list(uri_string:dissect_query(maps:get(query, U, ""))),
    N = list_to_integer(maps:get("n", Query, "100000")),
    Size = list_to_integer(maps:get("size", Query, "100")),
    Total = N * (Size + header_len(Size)),
    {Mod, Sock} = connect(Scheme, Host, Port),
    Key = base64:encode(rand:bytes(16)),
    Path = maps:get(path, U, "/") ++ "?" ++ maps:get(query, U, ""),
    ok = Mod:send(Sock, [
        "GET ", Path, " HTTP/1.1\r\nHost: ", Host, "\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ", Key,
        "\r\n\r\n"
    ]),
    Rest = response(Mod, Sock, <<>>),
    Beam0 = cpu(os:getpid()),
    T0 = erlang:monotonic_time(),
    ok = setopts(Mod, Sock, [{active, 100}]),
    Tail = loop(Mod, Sock, byte_size(Rest), Total, Rest),
    T1 = erlang:monotonic_time(),
    Beam1 = cpu(os:getpid()),
    Close = case after_frames(Mod, Sock, Tail) of
                <<16#88, _/binary>> -> 1000;
                _ -> -1
            end,
    Secs = erlang:convert_time_unit(T1 - T0, native, microsecond) / 1.0e6,
    Bytes = N * Size,
    io:format("msgs=~b bytes=~b secs=~.4f msgs_per_s=~b mb_per_s=~.1f cpu_beam=~.3f close=~b~n",
              [N, Bytes, Secs, round(N / Secs), Bytes / Secs / 1.0e6, float(Beam1 - Beam0),
               Close]),
    Mod:close(Sock),
    halt(0);
main(_) ->
    io:format(standard_error, "usage: beam_raw_bench.escript URL~n", []),
    halt(2).

header_len(Size) when Size < 126 -> 2;
header_len(Size) when Size =< 16#FFFF -> 4;
header_len(_) -> 10.

connect("ws", Host, Port) ->
    Opts = [binary, {active, false}, {nodelay, true}, {recbuf, 4 bsl 20}, {buffer, 1 bsl 20}],
    {ok, S} = gen_tcp:connect(Host, Port, Opts, 10000),
    {gen_tcp, S};
connect("wss", Host, Port) ->
    {ok, _} = application:ensure_all_started(ssl),
    Opts = [binary, {active, false}, {verify, verify_none}, {recbuf, 4 bsl 20}],
    {ok, S} = ssl:connect(Host, Port, Opts, 10000),
    {ssl, S}.

setopts(gen_tcp, S, Opts) -> inet:setopts(S, Opts);
setopts(ssl, S, Opts) -> ssl:setopts(S, Opts).

%% The 101 response; returns the bytes after it.
response(Mod, Sock, Acc) ->
    case binary:split(Acc, <<"\r\n\r\n">>) of
        [<<"HTTP/1.1 101", _/binary>>, Rest] -> Rest;
        [Head, _] -> fail("upgrade refused: ~s", [Head]);
        [_] ->
            case Mod:recv(Sock, 0, 10000) of
                {ok, More} -> response(Mod, Sock, <<Acc/binary, More/binary>>);
                {error, R} -> fail("no upgrade response: ~p", [R])
            end
    end.

%% Counts bytes until the frames' total; returns what came after it.
loop(_Mod, _Sock, Got, Total, Last) when Got >= Total ->
    Skip = byte_size(Last) - (Got - Total),
    binary:part(Last, Skip, byte_size(Last) - Skip);
loop(Mod, Sock, Got, Total, _Last) ->
    receive
        {Tag, Sock, Data} when Tag =:= tcp; Tag =:= ssl ->
            loop(Mod, Sock, Got + byte_size(Data), Total, Data);
        {Tag, Sock} when Tag =:= tcp_passive; Tag =:= ssl_passive ->
            ok = setopts(Mod, Sock, [{active, 100}]),
            loop(Mod, Sock, Got, Total, <<>>);
        {Tag, Sock} when Tag =:= tcp_closed; Tag =:= ssl_closed ->
            fail("closed after ~b of ~b bytes", [Got, Total])
    after 30000 -> fail("nothing for 30 s after ~b of ~b bytes", [Got, Total])
    end.

%% The first bytes after the frames (the close frame), waiting for them if
%% they did not come with the last frame.
after_frames(Mod, Sock, <<>>) ->
    receive
        {Tag, Sock, Data} when Tag =:= tcp; Tag =:= ssl -> Data;
        {Tag, Sock} when Tag =:= tcp_passive; Tag =:= ssl_passive ->
            ok = setopts(Mod, Sock, [{active, 1}]),
            after_frames(Mod, Sock, <<>>)
    after 5000 -> <<>>
    end;
after_frames(_Mod, _Sock, Tail) ->
    Tail.

fail(Fmt, Args) ->
    io:format(standard_error, "beam_raw_bench: " ++ Fmt ++ "~n", Args),
    halt(1).

%% utime + stime of an OS process, in seconds (as recv_bench).
cpu(Pid) ->
    {ok, Stat} = file:read_file("/proc/" ++ Pid ++ "/stat"),
    [_, Rest] = string:split(Stat, ")", trailing),
    Fields = string:lexemes(Rest, " "),
    UT = binary_to_integer(lists:nth(12, Fields)),
    ST = binary_to_integer(lists:nth(13, Fields)),
    Tck = case string:trim(os:cmd("getconf CLK_TCK")) of
              "" -> 100;
              T -> list_to_integer(T)
          end,
    (UT + ST) / Tck.
