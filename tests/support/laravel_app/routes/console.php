<?php

use Illuminate\Support\Facades\Artisan;

Artisan::command('app:version', function () {
    $this->line(config('app.version'));
})->purpose('Print the release version');
