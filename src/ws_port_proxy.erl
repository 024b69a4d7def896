%% @doc The `proxy' option of {@link ws_port:connect/2}: validation and the
%% form the port program reads.
%%
%% A proxy is given as a URL (binary or string):
%% <ul>
%% <li>`"http://[user:pass@]host[:port]"': HTTP CONNECT (Basic auth when
%% credentials are given);</li>
%% <li>`"socks5://[user:pass@]host[:port]"' or `"socks5h://..."' (the same:
%% the proxy always resolves the target's name): SOCKS5, RFC 1928, with the
%% username/password method of RFC 1929 when credentials are given.</li>
%% </ul>
%% The port defaults to 1080 (as curl's). Credentials in a URL are
%% percent-decoded. Or as a map: `#{type => http | socks5 | socks5h,
%% host => Host, port => Port, username => U, password => P}' (`type' and
%% `host' required). `proxy => none' (or `false') means no proxy.
%%
%% A bad value is refused naming the part: `{bad_option, {proxy, Part},
%% Value}' with Part one of `url', `scheme', `host', `port', `username',
%% `password', `path', `type' or an unknown map key; a password is never
%% echoed (its Value is `redacted'). A value that is neither a string nor a
%% map gives `{bad_option, proxy, Value}'.
%%
%% `proxy => system' (opt-in, never the default) takes the proxy from the
%% environment at each `connect/2' as curl does: for `wss://' `https_proxy'
%% (or `HTTPS_PROXY'), for `ws://' `http_proxy' (lowercase only, as curl),
%% then `all_proxy' / `ALL_PROXY'; a value without a scheme is `http://'.
%% `no_proxy' (or `NO_PROXY'): a comma-separated list of host names (one
%% matches itself and its subdomains, a leading dot ignored), IP addresses,
%% or `*' (no proxy at all); then the connection is direct. A bad
%% environment value is `{bad_option, {proxy, Part}, Value}' as if given.
-module(ws_port_proxy).

-export([normalize/1, wire/1, redact/1, scrub/1, resolve/2, from_env/2]).
-export_type([proxy/0]).

-type proxy() :: #{
    type := http | socks5,
    host := binary(),
    port := 1..65535,
    username => binary(),
    password => binary()
}.

-define(DEFAULT_PORT, 1080).

%% @doc Validates a `proxy' option value. `none' for no proxy.
-spec normalize(term()) -> {ok, proxy() | none | system} | {error, {bad_option, term(), term()}}.
normalize(P) when P =:= none; P =:= false ->
    {ok, none};
normalize(F) when is_function(F, 0) ->
    %% a fun returning the proxy (ws_port_proto:conceal/1): its credentials
    %% do not show where the options are kept
    try F() of
        P when not is_function(P) -> normalize(P)
    catch
        _:_ -> {error, {bad_option, proxy, redacted}}
    end;
normalize(system) ->
    {ok, system};
normalize(P) when is_map(P) ->
    from_map(lists:sort(maps:to_list(P)), #{});
normalize(P) when is_binary(P); is_list(P) ->
    case to_bin(P) of
        {ok, Bin} -> from_url(Bin);
        error -> {error, {bad_option, {proxy, url}, <<"not a string">>}}
    end;
normalize(P) ->
    {error, {bad_option, proxy, P}}.

%% @doc Resolves `proxy => system' for a connection to Url (normalised
%% options in, normalised options out, `proxy' then a proxy or `none').
-spec resolve(binary(), map()) -> {ok, map()} | {error, {bad_option, term(), term()}}.
resolve(Url, #{proxy := system} = Opts) ->
    case from_env(Url, fun os:getenv/1) of
        {ok, P} -> {ok, Opts#{proxy => P}};
        {error, _} = E -> E
    end;
resolve(_Url, Opts) ->
    {ok, Opts}.

%% @doc The proxy the environment (read with Getenv, as os:getenv/1) gives
%% for Url: see the module doc.
-spec from_env(binary(), fun((string()) -> string() | false)) ->
    {ok, proxy() | none} | {error, {bad_option, term(), term()}}.
from_env(Url, Getenv) ->
    #{scheme := Scheme} = U = uri_string:parse(Url),
    Host = string:lowercase(maps:get(host, U, <<>>)),
    Vars =
        case string:lowercase(Scheme) of
            <<"wss">> -> ["https_proxy", "HTTPS_PROXY"];
            _ -> ["http_proxy"]
        end ++ ["all_proxy", "ALL_PROXY"],
    case first_env(Vars, Getenv) of
        false ->
            {ok, none};
        Value ->
            case no_proxy(Host, first_env(["no_proxy", "NO_PROXY"], Getenv)) of
                true ->
                    {ok, none};
                false ->
                    V = unicode:characters_to_binary(Value),
                    WithScheme =
                        case binary:match(V, <<"://">>) of
                            nomatch -> <<"http://", V/binary>>;
                            _ -> V
                        end,
                    normalize(WithScheme)
            end
    end.

first_env([], _) ->
    false;
first_env([V | Rest], Getenv) ->
    case Getenv(V) of
        false -> first_env(Rest, Getenv);
        "" -> first_env(Rest, Getenv);
        Value -> Value
    end.

no_proxy(_Host, false) ->
    false;
no_proxy(Host, List) ->
    Entries = [
        string:lowercase(string:trim(E))
     || E <- string:split(unicode:characters_to_binary(List), <<",">>, all)
    ],
    lists:any(fun(E) -> no_proxy_match(Host, E) end, Entries).

no_proxy_match(_Host, <<>>) ->
    false;
no_proxy_match(_Host, <<"*">>) ->
    true;
no_proxy_match(Host, <<".", E/binary>>) ->
    no_proxy_match(Host, E);
no_proxy_match(Host, E) ->
    %% an IPv6 entry may come in brackets
    E1 = string:trim(E, both, "[]"),
    Host =:= E1 orelse
        (byte_size(Host) > byte_size(E1) andalso
            binary:longest_common_suffix([Host, <<".", E1/binary>>]) =:= byte_size(E1) + 1).

%% @doc The option as the port program reads it:
%% `{Type, Host, Port, Username, Password}' (`<<>>' for no credentials).
-spec wire(proxy()) -> {http | socks5, binary(), 1..65535, binary(), binary()}.
wire(#{type := T, host := H, port := Port} = P) ->
    {T, H, Port, maps:get(username, P, <<>>), maps:get(password, P, <<>>)}.

%% @doc The proxy as a URL without its credentials (for info and logs).
-spec redact(proxy() | none | system) -> binary() | none | system.
redact(none) ->
    none;
redact(system) ->
    system;
redact(#{type := T, host := H, port := Port}) ->
    Host =
        case binary:match(H, <<":">>) of
            nomatch -> H;
            _ -> <<"[", H/binary, "]">>
        end,
    iolist_to_binary([atom_to_list(T), "://", Host, ":", integer_to_list(Port)]).

%% @doc The term with every proxy password in it replaced by `redacted':
%% in wire options `{proxy, {T, H, P, U, Pw}}' and in option maps and lists
%% (`proxy => #{password := _}' or a URL with credentials).
-spec scrub(term()) -> term().
scrub({proxy, {T, H, P, U, _Pw}}) when is_atom(T), is_binary(H), is_integer(P), is_binary(U) ->
    {proxy, {T, H, P, U, redacted}};
scrub({proxy, V}) ->
    {proxy, scrub_value(V)};
scrub(M) when is_map(M) ->
    maps:map(
        fun
            (proxy, V) -> scrub_value(V);
            (_, V) -> scrub(V)
        end,
        M
    );
scrub(L) when is_list(L) ->
    scrub_list(L);
scrub(T) when is_tuple(T) ->
    list_to_tuple([scrub(E) || E <- tuple_to_list(T)]);
scrub(T) ->
    T.

%% lists may be improper (iodata, strings): scrub what is a term
scrub_list([]) -> [];
scrub_list([H | T]) -> [scrub(H) | scrub_list(T)];
scrub_list(T) -> scrub(T).

scrub_value(#{} = M) ->
    case M of
        #{password := _} -> M#{password => redacted};
        _ -> M
    end;
scrub_value(V) when is_binary(V); is_list(V) ->
    case normalize(V) of
        {ok, #{} = P} -> redact(P);
        _ -> redacted
    end;
scrub_value(V) ->
    scrub(V).

from_url(Bin) ->
    try uri_string:parse(Bin) of
        #{scheme := Scheme, host := Host} = U ->
            Checks = [
                fun() -> scheme(string:lowercase(Scheme)) end,
                fun() -> host(Host) end,
                fun() -> url_port(maps:get(port, U, undefined)) end,
                fun() -> path(maps:get(path, U, <<>>), U) end,
                fun() -> userinfo(maps:get(userinfo, U, undefined)) end
            ],
            run(Checks, #{port => ?DEFAULT_PORT});
        #{} ->
            {error, {bad_option, {proxy, url}, <<"a proxy URL needs a scheme and a host">>}};
        {error, _, _} ->
            {error, {bad_option, {proxy, url}, <<"malformed URL">>}}
    catch
        _:_ -> {error, {bad_option, {proxy, url}, <<"malformed URL">>}}
    end.

run([], Acc) ->
    {ok, Acc};
run([F | Rest], Acc) ->
    case F() of
        {ok, M} -> run(Rest, maps:merge(Acc, M));
        {error, _} = E -> E
    end.

scheme(<<"http">>) -> {ok, #{type => http}};
scheme(<<"socks5">>) -> {ok, #{type => socks5}};
scheme(<<"socks5h">>) -> {ok, #{type => socks5}};
scheme(S) -> {error, {bad_option, {proxy, scheme}, S}}.

host(H) when is_binary(H), byte_size(H) > 0, byte_size(H) =< 255 ->
    case binary:match(H, [<<0>>, <<" ">>, <<"\r">>, <<"\n">>, <<"/">>, <<"@">>]) of
        nomatch -> {ok, #{host => H}};
        _ -> {error, {bad_option, {proxy, host}, H}}
    end;
host(H) ->
    {error, {bad_option, {proxy, host}, H}}.

url_port(undefined) -> {ok, #{}};
url_port(P) -> port(P).

port(P) when is_integer(P), P >= 1, P =< 65535 -> {ok, #{port => P}};
port(P) -> {error, {bad_option, {proxy, port}, P}}.

path(Path, U) when Path =:= <<>>; Path =:= <<"/">> ->
    case U of
        #{query := Q} -> {error, {bad_option, {proxy, path}, <<"?", Q/binary>>}};
        #{fragment := F} -> {error, {bad_option, {proxy, path}, <<"#", F/binary>>}};
        _ -> {ok, #{}}
    end;
path(Path, _) ->
    {error, {bad_option, {proxy, path}, Path}}.

userinfo(undefined) ->
    {ok, #{}};
userinfo(UI) ->
    {User, Pass} =
        case binary:split(UI, <<":">>) of
            [U] -> {U, <<>>};
            [U, P] -> {U, P}
        end,
    case {decode(User), decode(Pass)} of
        {{ok, U1}, {ok, P1}} -> creds(U1, P1);
        {error, _} -> {error, {bad_option, {proxy, username}, <<"bad percent-encoding">>}};
        {_, error} -> {error, {bad_option, {proxy, password}, redacted}}
    end.

decode(B) ->
    case uri_string:percent_decode(B) of
        D when is_binary(D) -> {ok, D};
        _ -> error
    end.

creds(U, P) ->
    case {cred_ok(U) andalso U =/= <<>>, cred_ok(P)} of
        {true, true} -> {ok, #{username => U, password => P}};
        {false, _} -> {error, {bad_option, {proxy, username}, U}};
        {_, false} -> {error, {bad_option, {proxy, password}, redacted}}
    end.

cred_ok(B) -> is_binary(B) andalso byte_size(B) =< 255 andalso binary:match(B, <<0>>) =:= nomatch.

from_map([], #{type := _, host := _} = Acc) ->
    finish_map(maps:merge(#{port => ?DEFAULT_PORT}, Acc));
from_map([], Acc) ->
    Missing = hd([K || K <- [type, host], not maps:is_key(K, Acc)]),
    {error, {bad_option, {proxy, Missing}, missing}};
from_map([{type, T} | Rest], Acc) ->
    case T of
        http -> from_map(Rest, Acc#{type => http});
        _ when T =:= socks5; T =:= socks5h -> from_map(Rest, Acc#{type => socks5});
        _ -> {error, {bad_option, {proxy, type}, T}}
    end;
from_map([{host, H} | Rest], Acc) ->
    case to_bin(H) of
        {ok, B} ->
            case host(B) of
                {ok, M} -> from_map(Rest, maps:merge(Acc, M));
                {error, _} = E -> E
            end;
        error ->
            {error, {bad_option, {proxy, host}, H}}
    end;
from_map([{port, P} | Rest], Acc) ->
    case port(P) of
        {ok, M} -> from_map(Rest, maps:merge(Acc, M));
        {error, _} = E -> E
    end;
from_map([{username, U} | Rest], Acc) ->
    case to_bin(U) of
        {ok, B} -> from_map(Rest, Acc#{username => B});
        error -> {error, {bad_option, {proxy, username}, U}}
    end;
from_map([{password, P} | Rest], Acc) ->
    case to_bin(P) of
        {ok, B} -> from_map(Rest, Acc#{password => B});
        error -> {error, {bad_option, {proxy, password}, redacted}}
    end;
from_map([{K, V} | _], _) ->
    {error, {bad_option, {proxy, K}, V}}.

finish_map(#{username := U} = M) ->
    case creds(U, maps:get(password, M, <<>>)) of
        {ok, C} -> {ok, maps:merge(M, C)};
        {error, _} = E -> E
    end;
finish_map(#{password := _}) ->
    {error, {bad_option, {proxy, username}, missing}};
finish_map(M) ->
    {ok, M}.

to_bin(B) when is_binary(B) ->
    {ok, B};
to_bin(L) when is_list(L) ->
    try unicode:characters_to_binary(L) of
        B when is_binary(B) -> {ok, B};
        _ -> error
    catch
        _:_ -> error
    end;
to_bin(_) ->
    error.
