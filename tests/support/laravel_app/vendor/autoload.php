<?php

// Laravel 8 from Debian's packages (php-laravel-framework and its dependencies), copied into
// vendor/ from /usr/share/php by CHOM's test helper (tests/support/laravel.py): Packagist is out
// of reach, and PHP-FPM's open_basedir keeps a site inside its own home, so the framework must
// live in the release like a Composer vendor/ would. Debian's autoloaders find each other
// through the include path; this one adds the application's own PSR-4 namespaces.
$previous = set_include_path(__DIR__);
require_once 'Illuminate/autoload.php';
set_include_path($previous);

spl_autoload_register(function (string $class): void {
    $roots = [
        'App\\' => 'app/',
        'Database\\Factories\\' => 'database/factories/',
        'Database\\Seeders\\' => 'database/seeders/',
    ];
    foreach ($roots as $prefix => $dir) {
        if (strncmp($class, $prefix, strlen($prefix)) === 0) {
            $file = dirname(__DIR__).'/'.$dir.str_replace('\\', '/', substr($class, strlen($prefix))).'.php';
            if (is_file($file)) {
                require $file;
            }
            return;
        }
    }
});
